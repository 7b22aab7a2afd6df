"""The manifest beside a checkpoint (``vlserve-manifest.json``) and the offline check against it.

The manifest lists every file of the checkpoint with its size and SHA-256, where it came from (``huggingface``,
``modelscope`` or ``local``), the repository and the resolved commit. `vlserve pull` writes it once every file is
in and checked; `vlserve verify` re-reads every byte against it with no network, e.g. after the weights were
carried into an air-gapped site. huggingface_hub's own bookkeeping (``.cache/`` in a ``local_dir``) is no part of
the checkpoint and is neither listed nor reported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

MANIFEST_NAME = "vlserve-manifest.json"
FORMAT = 1
SOURCES = ("huggingface", "modelscope", "local")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf")
_CHUNK = 4 * 1024 * 1024
_SKIPPED_DIRS = {".cache"}  # huggingface_hub's download metadata inside a local_dir

Progress = Callable[[int], None]  # called with the number of bytes just read


class ManifestError(Exception):
    """A manifest that is missing or cannot be read; the message is one line naming the file."""


class ChecksumError(ManifestError):
    """A file whose SHA-256 is not the one expected (``path``: relative to the checkpoint)."""

    def __init__(self, path: str, expected: str, actual: str | None) -> None:
        found = f"SHA-256 is {actual}" if actual is not None else "missing"
        super().__init__(f"{path}: {found}, expected SHA-256 {expected}")
        self.path = path


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the checkpoint directory, '/'-separated
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    source: str
    repo_id: str | None
    revision: str | None
    files: tuple[FileEntry, ...]
    created_at: str

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def write(self, directory: Path) -> Path:
        """Write the manifest into ``directory`` (atomically: a reader sees the old one or the whole new one)."""
        body = {
            "format": FORMAT,
            "source": self.source,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "created_at": self.created_at,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }
        path = directory / MANIFEST_NAME
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(body, indent=1) + "\n")
        os.replace(partial, path)
        return path

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"{directory} has no {MANIFEST_NAME} (pull it with vlserve pull, which writes one)")
        try:
            body = json.loads(path.read_text())
            files = tuple(_entry(item) for item in body["files"])
            manifest = cls(
                source=_text(body["source"]),
                repo_id=_optional_text(body.get("repo_id")),
                revision=_optional_text(body.get("revision")),
                files=files,
                created_at=_text(body["created_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"{path} is not a valid manifest: {_describe(exc)}") from None
        if manifest.source not in SOURCES:
            raise ManifestError(f"{path} is not a valid manifest: source {manifest.source!r} is not one of {SOURCES}")
        return manifest


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _entry(item: object) -> FileEntry:
    if not isinstance(item, dict):
        raise TypeError(f"a file entry is {item!r}")
    path, size, digest = _text(item["path"]), item["size"], _text(item["sha256"])
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"{path}: size {size!r}")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{path}: sha256 {digest!r}")
    if path.startswith("/") or ".." in path.split("/"):
        raise ValueError(f"{path}: not a path inside the checkpoint")
    return FileEntry(path, size, digest)


def _describe(exc: Exception) -> str:
    return f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]


def is_weight(path: str) -> bool:
    return path.endswith(WEIGHT_SUFFIXES)


def hash_file(path: Path, *, progress: Progress | None = None) -> str:
    """The file's SHA-256 in hex, read in 4 MiB chunks; ``progress`` gets each chunk's length."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()


def checkpoint_files(directory: Path) -> Iterator[str]:
    """Every file of the checkpoint, relative and sorted: all but the manifest and ``.cache/``."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not (Path(root) == directory and d in _SKIPPED_DIRS))
        for name in files:
            relative = (Path(root) / name).relative_to(directory).as_posix()
            if relative not in (MANIFEST_NAME, MANIFEST_NAME + ".partial"):
                found.append(relative)
    return iter(sorted(found))


def build_manifest(
    directory: Path,
    *,
    source: str,
    repo_id: str | None,
    revision: str | None,
    expected: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Hash every file in ``directory`` into a manifest (not written). With ``expected`` (the hub's SHA-256 per
    weight file), a file that is missing or hashes otherwise raises ChecksumError naming it."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {SOURCES}")
    entries = []
    for relative in checkpoint_files(directory):
        path = directory / relative
        entries.append(FileEntry(relative, path.stat().st_size, hash_file(path, progress=progress)))
    if expected:
        have = {e.path: e.sha256 for e in entries}
        for relative, digest in sorted(expected.items()):
            if have.get(relative) != digest.lower():
                raise ChecksumError(relative, digest.lower(), have.get(relative))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return Manifest(source=source, repo_id=repo_id, revision=revision, files=tuple(entries), created_at=created)


@dataclass(frozen=True)
class VerifyReport:
    manifest: Manifest
    missing: tuple[str, ...] = ()
    wrong_size: tuple[tuple[str, int, int], ...] = ()  # path, expected, actual
    wrong_hash: tuple[str, ...] = ()
    unlisted: tuple[str, ...] = field(default=())  # present but not in the manifest

    @property
    def unlisted_weights(self) -> tuple[str, ...]:
        """Weight files the manifest does not know: a model could load them, so they are errors."""
        return tuple(p for p in self.unlisted if is_weight(p))

    @property
    def unlisted_others(self) -> tuple[str, ...]:
        return tuple(p for p in self.unlisted if not is_weight(p))

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong_size or self.wrong_hash or self.unlisted_weights)

    def problems(self) -> list[str]:
        """One line per bad file, naming it."""
        return [
            *(f"{p}: missing" for p in self.missing),
            *(f"{p}: {actual} bytes, the manifest says {size}" for p, size, actual in self.wrong_size),
            *(f"{p}: SHA-256 differs from the manifest's (the file is corrupt)" for p in self.wrong_hash),
            *(f"{p}: weights not in the manifest" for p in self.unlisted_weights),
        ]


def check_sizes(directory: Path, manifest: Manifest) -> VerifyReport:
    """The fast check: every listed file present with its size, and which files are not listed. No hashing."""
    missing, wrong_size = [], []
    for entry in manifest.files:
        path = directory / entry.path
        if not path.is_file():
            missing.append(entry.path)
        elif (actual := path.stat().st_size) != entry.size:
            wrong_size.append((entry.path, entry.size, actual))
    listed = {f.path for f in manifest.files}
    unlisted = tuple(p for p in checkpoint_files(directory) if p not in listed)
    return VerifyReport(manifest, tuple(missing), tuple(wrong_size), (), unlisted)


def verify(directory: Path, *, progress: Progress | None = None) -> VerifyReport:
    """Re-check every file against the manifest: size first, then SHA-256 of those whose size matches.
    ``progress`` gets every byte of the manifest's total once (skipped files count as read)."""
    manifest = Manifest.read(directory)
    sizes = check_sizes(directory, manifest)
    skipped = set(sizes.missing) | {p for p, _, _ in sizes.wrong_size}
    wrong_hash = []
    for entry in manifest.files:
        if entry.path in skipped:
            if progress is not None:
                progress(entry.size)
        elif hash_file(directory / entry.path, progress=progress) != entry.sha256:
            wrong_hash.append(entry.path)
    return VerifyReport(manifest, sizes.missing, sizes.wrong_size, tuple(wrong_hash), sizes.unlisted)
