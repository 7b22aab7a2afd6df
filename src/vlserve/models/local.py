"""Checkpoints on this machine: where a MODEL is served from, and the listing `vlserve models` shows.

Pulled models live in ``DATA_DIR/models/<local name>`` (catalogue.py says which name). Reading them needs no
torch and no network: the JSON files and the sizes on disk.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlserve.models.catalogue import UnknownModel, lookup, resolve
from vlserve.models.manifest import MANIFEST_NAME, Manifest, ManifestError, check_sizes, checkpoint_files


def models_dir(data_dir: Path) -> Path:
    return data_dir / "models"


def checkpoint_dir(model: Path, data_dir: Path) -> Path:
    """The directory to serve for ``--model``: a path that exists is that path; else a catalogue name or a hub id
    is its pulled directory under the data dir (which may not exist yet); anything else is the path as given."""
    if model.exists():
        return model
    try:
        return models_dir(data_dir) / resolve(str(model)).local_name
    except UnknownModel:
        return model


def pull_hint(model: Path, data_dir: Path) -> str | None:
    """When ``model`` names a model (not a path) that has not been pulled: one line saying what to run."""
    if model.exists():
        return None
    try:
        ref = resolve(str(model))
    except UnknownModel:
        return None
    target = models_dir(data_dir) / ref.local_name
    if (target / "config.json").is_file():
        return None
    shown = ref.entry.name if ref.entry is not None else str(model)
    return f"{shown} has not been pulled (no checkpoint in {target}); fetch it first with: vlserve pull {shown}"


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: Path
    size: int  # bytes on disk, every file of the checkpoint
    engine: str
    source: str | None  # from the manifest; None without one
    repo_id: str | None
    revision: str | None
    verified: bool  # a manifest is present and every file has its size (`vlserve verify` reads every byte)
    check: str  # what the fast check found, in words

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def _engine(name: str, directory: Path) -> str:
    """The engine from the catalogue when the name is one; else what config.json's architecture allows."""
    from vlserve.engine.checkpoint_files import SUPPORTED_MODEL_TYPES

    if (entry := lookup(name)) is not None:
        return entry.engine
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return "none (no readable config.json)"
    if not isinstance(config, dict):
        return "none (config.json is not an object)"
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        arch = (config.get("architectures") or [config.get("model_type")])[0]
        return f"none ({arch} is not supported)"
    return "vllm" if "quantization_config" in config else "transformers, vllm"


def describe(directory: Path) -> LocalModel:
    """One checkpoint, with the fast size check against its manifest."""
    size = sum((directory / p).stat().st_size for p in checkpoint_files(directory))
    manifest: Manifest | None = None
    try:
        manifest = Manifest.read(directory)
    except ManifestError:
        check = "no manifest" if not (directory / MANIFEST_NAME).is_file() else "bad manifest"
        verified = False
    else:
        report = check_sizes(directory, manifest)
        problems = report.problems()
        verified = not problems
        check = "sizes match" if verified else f"{len(problems)} bad file(s)"
    return LocalModel(
        name=directory.name,
        path=directory,
        size=size,
        engine=_engine(directory.name, directory),
        source=manifest.source if manifest else None,
        repo_id=manifest.repo_id if manifest else None,
        revision=manifest.revision if manifest else None,
        verified=verified,
        check=check,
    )


def _is_checkpoint(directory: Path) -> bool:
    return (directory / "config.json").is_file() or (directory / MANIFEST_NAME).is_file()


def list_models(roots: list[Path]) -> list[LocalModel]:
    """The checkpoints in ``roots``: a root that is a checkpoint itself, else the checkpoints directly in it."""
    found: dict[Path, LocalModel] = {}
    for root in roots:
        if not root.is_dir():
            continue
        candidates = [root] if _is_checkpoint(root) else sorted(p for p in root.iterdir() if p.is_dir())
        for directory in candidates:
            if not directory.name.startswith(".") and _is_checkpoint(directory):
                found.setdefault(directory.resolve(), describe(directory))
    return list(found.values())
