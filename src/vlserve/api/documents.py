"""Document jobs: POST /v1/documents (multipart) → 202; status, result, list and cancel."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from vlserve.api.content_schema import JSON_OBJECT_TEXT
from vlserve.api.openapi import AT_LEAST_ONE, IMAGE_TYPES, PAGE_RANGE, WEBHOOK_URL, multipart_files
from vlserve.api.state import DocumentsDep, StateDep
from vlserve.documents.intake import Submission, Upload
from vlserve.documents.views import job_result, job_status
from vlserve.media.limits import payload_too_large
from vlserve.observability.accounting import note_resource
from vlserve.security.principal import Principal, principal_of
from vlserve.store.models import DOCUMENT_ID_PATTERN

router = APIRouter()


def _principal(request: Request) -> Principal | None:
    """The key calling (None with auth off): it owns the jobs it submits and sees only those (admin: all)."""
    return principal_of(request.scope)


PrincipalDep = Annotated[Principal | None, Depends(_principal)]
Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@router.post("/v1/documents", status_code=202, openapi_extra=multipart_files("file", ("application/pdf", *IMAGE_TYPES)))
async def create_document(
    state: StateDep,
    documents: DocumentsDep,
    raw: Request,
    principal: PrincipalDep,
    file: Annotated[
        list[UploadFile],
        File(description="One PDF, or one or more images (one page each).", json_schema_extra=AT_LEAST_ONE),
    ],
    prompt: Annotated[str | None, Form(max_length=20_000)] = None,
    json_schema: Annotated[
        str | None, Form(max_length=200_000, description="A JSON Schema, as JSON.", json_schema_extra=JSON_OBJECT_TEXT)
    ] = None,
    pages: Annotated[
        str | None, Form(max_length=1000, description='Page range, e.g. "1-5,8".', json_schema_extra=PAGE_RANGE)
    ] = None,
    webhook_url: Annotated[str | None, Form(max_length=2048, json_schema_extra=WEBHOOK_URL)] = None,
) -> JSONResponse:
    """Queue a document: each page is read by the model; poll the job or receive a webhook when it ends."""
    limit = state.settings.document_max_bytes
    uploads, left = [], limit
    for index, part in enumerate(file):
        data = await part.read(left + 1)
        if len(data) > left:
            raise payload_too_large(
                limit, param=f"file[{index}]", what="upload (all files together)", setting="VLSERVE_DOCUMENT_MAX_BYTES"
            )
        left -= len(data)
        uploads.append(Upload(part.filename, part.content_type, data))
    form = Submission(prompt=prompt, json_schema=json_schema, pages=pages, webhook_url=webhook_url)
    doc, secret = await documents.submit(uploads, form, principal)
    note_resource(doc.id)
    body = job_status(doc)
    if secret:
        body["webhook_secret"] = secret  # shown once: it signs this job's webhook
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/documents/{doc.id}"})


@router.get("/v1/documents")
async def list_documents(
    documents: DocumentsDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Status | None = None,
    after: Annotated[
        str | None, Query(pattern=DOCUMENT_ID_PATTERN, description="id of the last job of the previous page (doc_…)")
    ] = None,
) -> dict:
    """Jobs, newest first (a key's own jobs; an admin key's: all)."""
    jobs = await documents.recent(limit=limit + 1, status=status, after=after, principal=principal)
    return {"object": "list", "data": [job_status(d) for d in jobs[:limit]], "has_more": len(jobs) > limit}


@router.get("/v1/documents/{document_id}")
async def get_document(document_id: str, documents: DocumentsDep, principal: PrincipalDep) -> dict:
    """Status and page counters of one job, with each failed page's reason."""
    return job_status(await documents.get(document_id, principal))


@router.get("/v1/documents/{document_id}/result")
async def get_document_result(document_id: str, documents: DocumentsDep, principal: PrincipalDep) -> dict:
    """Every page's answer (text, or data under the schema) with attempts and timings, and the merged document."""
    return job_result(await documents.get(document_id, principal))


@router.delete("/v1/documents/{document_id}")
async def cancel_document(document_id: str, documents: DocumentsDep, principal: PrincipalDep) -> dict:
    """Cancel a job that has not ended: queued pages are dropped, pages being read are discarded."""
    return job_status(await documents.cancel(document_id, principal))
