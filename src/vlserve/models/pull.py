"""`vlserve pull` from Hugging Face: choose the files a server needs, check the disk, fetch with resume, check
every weight file's SHA-256 against the hub's and write the manifest.

Everything goes through the `huggingface_hub` client: the model info (`HfApi.model_info` with file metadata),
each file's metadata (`get_hf_file_metadata`: commit, ETag, redirect to the CDN) and the transfer itself
(`http_get`, which resumes with an HTTP Range after a dropped connection). The client honours ``HF_ENDPOINT``
(mirrors), ``HF_TOKEN`` and its other settings. One thing is done here instead of by `hf_hub_download`: since
huggingface_hub 1.x that writes each download to a process-unique temporary file and deletes it on failure
(huggingface/huggingface_hub#4228), so a pull stopped by Ctrl-C, a crash or a reboot would start that file again
from zero. Here each file is fetched into ``DIR/.cache/vlserve/<sha>.part``, keyed by the content's hash, and the
next pull resumes it with a Range request where the last one stopped.

Every file is fetched at the commit the revision resolved to, so a branch that moves during a pull cannot mix
two versions, and that commit is what the manifest records.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vlserve.models.manifest import ChecksumError, Manifest, build_manifest

# Files a server reads: weights as safetensors (and their index), configs, tokenizer, processor, chat template.
_WANTED_SUFFIXES = (".safetensors", ".json", ".jinja")
_WANTED_NAMES = {"merges.txt", "tokenizer.model"}
# The same weights in other formats, and their indexes: never fetched.
_DUPLICATE_SUFFIXES = (".bin", ".pth", ".pt", ".gguf", ".onnx", ".msgpack", ".h5", ".ckpt", ".bin.index.json")
PARTIAL_DIR = Path(".cache") / "vlserve"  # inside the checkpoint; the manifest leaves `.cache/` out

Progress = Callable[[int], None]


class PullError(Exception):
    """A pull that cannot go on; the message is one line saying why and, where there is one, what to do."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # the hub's SHA-256 for LFS files (all weights); None for small git-stored files
    blob_id: str | None  # the git object id: the key of a non-LFS file's partial download

    @property
    def key(self) -> str:
        return self.sha256 or self.blob_id or self.path.replace("/", "--")


@dataclass(frozen=True)
class PullPlan:
    repo_id: str
    commit: str
    files: tuple[RemoteFile, ...]
    directory: Path
    endpoint: str
    token: str | None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def final_path(self, file: RemoteFile) -> Path:
        return self.directory / file.path

    def partial_path(self, file: RemoteFile) -> Path:
        return self.directory / PARTIAL_DIR / f"{file.key}.part"

    def present_bytes(self, file: RemoteFile) -> int:
        """Bytes of ``file`` already on disk: all of it when in place at its size, else the partial download."""
        final = self.final_path(file)
        if final.is_file() and final.stat().st_size == file.size:
            return file.size
        partial = self.partial_path(file)
        return min(partial.stat().st_size, file.size) if partial.is_file() else 0

    @property
    def bytes_present(self) -> int:
        return sum(self.present_bytes(f) for f in self.files)


def wanted(path: str) -> bool:
    """Whether a repository file is one a server needs (top-level files only; never duplicate weight formats)."""
    if "/" in path or path.endswith(_DUPLICATE_SUFFIXES):
        return False
    return path.endswith(_WANTED_SUFFIXES) or path in _WANTED_NAMES


def endpoint() -> str:
    """The Hub endpoint: ``HF_ENDPOINT`` as set now (a mirror), else huggingface.co."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def plan(repo_id: str, directory: Path, *, revision: str | None = None) -> PullPlan:
    """Resolve ``revision`` (default: main) to a commit and choose the files to fetch, with their sizes and hashes."""
    from huggingface_hub import HfApi

    hub, token = endpoint(), os.environ.get("HF_TOKEN") or None
    with hub_errors(repo_id, revision, hub):
        info = HfApi(endpoint=hub, token=token).model_info(repo_id, revision=revision, files_metadata=True)
    files = tuple(
        RemoteFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else None, s.blob_id)
        for s in info.siblings or ()
        if wanted(s.rfilename)
    )
    if not any(f.path.endswith(".safetensors") for f in files):
        raise PullError(f"{repo_id} has no .safetensors weights; vlserve serves safetensors checkpoints only")
    if not info.sha:
        raise PullError(f"{hub} did not say which commit {revision or 'main'} of {repo_id} is")
    return PullPlan(repo_id, info.sha, files, directory, hub, token)


def check_disk(plan: PullPlan) -> None:
    """Refuse before the first byte when the disk holding the directory cannot take what is still to fetch."""
    needed = plan.total_bytes - plan.bytes_present
    existing = plan.directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise PullError(
            f"not enough disk space in {plan.directory}: the pull needs {needed / 1e9:.2f} GB more, "
            f"{free / 1e9:.2f} GB are free"
        )


def download(plan: PullPlan, *, progress: Progress | None = None) -> None:
    """Fetch every file not yet in place, resuming partial downloads; ``progress`` gets each chunk's length."""
    for file in plan.files:
        if plan.present_bytes(file) == file.size and plan.final_path(file).is_file():
            continue
        with hub_errors(plan.repo_id, plan.commit, plan.endpoint), _disk_errors(plan.directory):
            _fetch(plan, file, progress)
    with contextlib.suppress(OSError):  # left behind only when empty
        (plan.directory / PARTIAL_DIR).rmdir()
        (plan.directory / PARTIAL_DIR.parent).rmdir()


def _fetch(plan: PullPlan, file: RemoteFile, progress: Progress | None) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(plan.repo_id, file.path, revision=plan.commit, endpoint=plan.endpoint)
    meta = get_hf_file_metadata(url, token=plan.token, endpoint=plan.endpoint)
    headers = build_hf_headers(token=plan.token)
    location = meta.location or url
    if urlsplit(location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a signed CDN address: the token stays with the hub, as the client does
    partial, final = plan.partial_path(file), plan.final_path(file)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("r+b" if partial.exists() else "wb") as handle:
        start = handle.seek(0, os.SEEK_END)
        if start > file.size:  # not a prefix of this file: start again
            handle.truncate(start := handle.seek(0))
        http_get(
            location,
            handle,
            resume_size=start,
            headers=headers,
            expected_size=file.size,
            displayed_filename=file.path,
            tqdm_class=_reporter(progress),
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, final)


def _reporter(progress: Progress | None) -> type:
    """A progress-bar class for `http_get` that forwards each chunk's length to ``progress`` and draws nothing."""

    class Reporter:
        def __init__(self, **kwargs: object) -> None:
            pass

        def __enter__(self) -> Reporter:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: int = 1) -> None:
            if progress is not None:
                progress(n)

    return Reporter


def finish(plan: PullPlan, *, source: str = "huggingface", progress: Progress | None = None) -> Manifest:
    """Hash every file, check each weight against the hub's SHA-256 and write the manifest. A file that differs is
    deleted (the next pull fetches it again) and named in the error."""
    expected = {f.path: f.sha256 for f in plan.files if f.sha256}
    try:
        manifest = build_manifest(
            plan.directory,
            source=source,
            repo_id=plan.repo_id,
            revision=plan.commit,
            expected=expected,
            progress=progress,
        )
    except ChecksumError as exc:
        with contextlib.suppress(OSError):
            (plan.directory / exc.path).unlink()
        raise PullError(f"{exc.path} does not match the hub's SHA-256 (deleted; run the pull again): {exc}") from None
    manifest.write(plan.directory)
    return manifest


@contextlib.contextmanager
def _disk_errors(directory: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno is None:  # the client's own OSErrors (HTTP errors, a short body): hub_errors says those
            raise
        raise PullError(f"cannot write into {directory}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str | None, hub: str) -> Iterator[None]:
    """The client's exceptions as one-line PullErrors that say what to do."""
    import httpx2
    from huggingface_hub.errors import (
        FileMetadataError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except OfflineModeIsEnabled:
        raise PullError("HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: unset it to pull") from None
    except GatedRepoError as exc:
        status = exc.response.status_code
        detail = "the token in HF_TOKEN has no access" if status == 403 else "set HF_TOKEN to a token with access"
        raise PullError(f"{repo_id} is gated: accept its terms on its model page, then {detail}") from None
    except RepositoryNotFoundError:
        raise PullError(f"{repo_id} is not on {hub} (a private repository needs HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise PullError(f"revision {revision!r} is not in {repo_id} on {hub}") from None
    except RemoteEntryNotFoundError as exc:
        raise PullError(f"a file of {repo_id} is missing on {hub}: {_first_line(exc)}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an error"
        raise PullError(f"{hub} answered {status} for {repo_id}: {_first_line(exc)}") from None
    except FileMetadataError as exc:
        raise PullError(f"{hub} does not answer like a Hugging Face hub: {_first_line(exc)}") from None
    except (httpx2.TransportError, ConnectionError) as exc:
        raise PullError(f"cannot reach {hub}: {_first_line(exc)} (a mirror goes in HF_ENDPOINT)") from None
    except OSError as exc:
        if exc.errno is not None:
            raise
        raise PullError(f"download from {hub} failed: {_first_line(exc)}; run the pull again to resume") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
