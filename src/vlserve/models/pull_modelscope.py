"""`vlserve pull --source modelscope`: the same pull as from Hugging Face (pull.py: the same files, the disk checked
first, every file checked against the hub's SHA-256, the manifest with the resolved commit), through the
``modelscope`` client (its ``modelscope_hub`` package, 0.5).

The client's calls, under ``{endpoint}/api/v1``:
- ``GET models/{owner}/{name}/repo/files?Revision=REV&Recursive=False``: the top-level files with ``Size`` and
  ``Sha256``, and ``LatestCommitter.Id``, the commit REV is at. The listing goes through the client's own request
  (`HubApi._legacy_request`: its session, token, retries and ``{"Code": 200}`` envelope check) because its public
  `list_repo_files` drops that commit. Top level only: a server reads nothing below it (pull.wanted).
- ``GET models/{owner}/{name}/repo?Revision=COMMIT&FilePath=PATH``: a file's bytes (`DownloadManager.download_file`).
  The client writes ``PATH.incomplete`` beside the file and, after a dropped connection, asks for the rest with
  ``Range: bytes=N-``, up to MODELSCOPE_DOWNLOAD_MAX_RETRIES (5) times within a run; the partial file stays on disk,
  so the next pull resumes it too. Here that is ``DIR/.cache/vlserve/modelscope/PATH.incomplete``; a finished file
  is moved into place.

The client reads its endpoint from ``MODELSCOPE_ENDPOINT`` (a mirror; ``MODELSCOPE_DOMAIN`` still works,
deprecated), its token from ``MODELSCOPE_API_TOKEN`` or what ``modelscope login`` saved, and keeps its locks and
settings under ``MODELSCOPE_CACHE`` and ``MODELSCOPE_HOME``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlserve.models.pull import PARTIAL_DIR, Progress, PullError, PullPlan, RemoteFile, _first_line, wanted

INSTALL_HINT = "the ModelScope client is not installed: pip install 'vlserve[modelscope]'"
DEFAULT_REVISION = "master"  # ModelScope's default branch
_STAGING = PARTIAL_DIR / "modelscope"  # the client's local_dir: each file lands here, then moves into place


@dataclass(frozen=True)
class ModelScopePlan(PullPlan):
    def partial_path(self, file: RemoteFile) -> Path:
        """Where the client keeps what it has of ``file`` so far."""
        return self.directory / _STAGING / f"{file.path}.incomplete"


def _api(endpoint: str | None = None) -> Any:
    try:
        from modelscope.hub.api import HubApi
    except ImportError:
        raise PullError(INSTALL_HINT, 2) from None
    return HubApi(endpoint=endpoint)


def plan(repo_id: str, directory: Path, *, revision: str | None = None) -> ModelScopePlan:
    """Resolve ``revision`` (default: master) to a commit and choose the files to fetch, with sizes and hashes."""
    api = _api()
    hub, rev = api.endpoint, revision or DEFAULT_REVISION
    params = {"Revision": rev, "Recursive": "False"}
    try:
        with hub_errors(repo_id, rev, hub):
            data = api._legacy_request("GET", f"models/{repo_id}/repo/files", params=params).get("Data") or {}
        files = tuple(
            RemoteFile(e["Path"], int(e.get("Size") or 0), e.get("Sha256") or None, None)
            for e in data.get("Files") or []
            if e.get("Type", "blob") == "blob" and wanted(e.get("Path") or "")
        )
        commit = ((data.get("LatestCommitter") or {}).get("Id") or "").strip()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not the listing's shape
        raise PullError(f"{hub} does not answer like a ModelScope hub: {_first_line(exc)}") from None
    if not any(f.path.endswith(".safetensors") for f in files):
        raise PullError(f"{repo_id} has no .safetensors weights; vlserve serves safetensors checkpoints only")
    if not commit:
        raise PullError(f"{hub} did not say which commit {rev} of {repo_id} is")
    return ModelScopePlan(repo_id, commit, files, directory, hub, None)  # the client holds the token


def download(plan: ModelScopePlan, *, progress: Progress | None = None) -> None:
    """Fetch every file not yet in place at the plan's commit; ``progress`` gets each chunk's length."""
    from modelscope_hub import ProgressCallback

    class Reporter(ProgressCallback):
        def update(self, size: int) -> None:
            if progress is not None:
                progress(size)

    downloader = _api(plan.endpoint).downloader
    staging = plan.directory / _STAGING
    for file in plan.files:
        final = plan.final_path(file)
        if final.is_file() and final.stat().st_size == file.size:
            continue
        with hub_errors(plan.repo_id, plan.commit, plan.endpoint), _disk_errors(plan.directory):
            got = downloader.download_file(
                plan.repo_id,
                "model",
                file.path,
                revision=plan.commit,
                local_dir=staging,
                file_size=file.size,
                progress_callbacks=[Reporter],
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(got, final)
    with contextlib.suppress(OSError):  # left behind only when empty
        for empty in (staging, *staging.parents):
            if empty == plan.directory:
                break
            empty.rmdir()


@contextlib.contextmanager
def _disk_errors(directory: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno is None:  # the client's network errors are OSErrors too: hub_errors says those
            raise
        raise PullError(f"cannot write into {directory}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str, hub: str) -> Iterator[None]:
    """The client's exceptions as one-line PullErrors that say what to do."""
    from modelscope_hub.errors import (
        APIError,
        AuthenticationError,
        FileIntegrityError,
        HubError,
        NetworkError,
        NotExistError,
        PermissionDeniedError,
    )

    try:
        yield
    except (AuthenticationError, PermissionDeniedError):
        raise PullError(f"{hub} refused {repo_id}: set MODELSCOPE_API_TOKEN to a token with access") from None
    except NotExistError:
        raise PullError(f"{repo_id} at revision {revision!r} is not on {hub} (a private one needs a token)") from None
    except NetworkError as exc:
        raise PullError(f"cannot reach {hub}: {_first_line(exc)} (a mirror goes in MODELSCOPE_ENDPOINT)") from None
    except FileIntegrityError as exc:
        raise PullError(f"download from {hub} failed: {_first_line(exc)}; run the pull again") from None
    except APIError as exc:
        status = getattr(exc, "status_code", None) or "an error"
        raise PullError(f"{hub} answered {status} for {repo_id}: {_first_line(exc)}") from None
    except HubError as exc:
        raise PullError(f"download from {hub} failed: {_first_line(exc)}; run the pull again to resume") from None
