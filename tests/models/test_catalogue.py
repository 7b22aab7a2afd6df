"""A user's MODEL string: a catalogue name or a hub id, and the directory it is pulled into and served from."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlserve.models.catalogue import CATALOGUE, UnknownModel, resolve
from vlserve.models.local import checkpoint_dir


def test_every_catalogue_name_and_its_hub_ids_resolve_to_the_same_local_directory():
    for entry in CATALOGUE:
        for spelling in (entry.name, entry.huggingface, entry.modelscope, entry.huggingface.lower()):
            ref = resolve(spelling)
            assert (ref.local_name, ref.huggingface, ref.entry) == (entry.name, entry.huggingface, entry)
    assert resolve("qwen3-vl-2b").huggingface == "Qwen/Qwen3-VL-2B-Instruct"
    assert resolve("qwen3-vl-30b-a3b-fp8").modelscope == "Qwen/Qwen3-VL-30B-A3B-Instruct-FP8"
    assert {e.engine for e in CATALOGUE if e.name in ("qwen3-vl-2b", "qwen3-vl-4b")} == {"transformers"}
    assert {e.engine for e in CATALOGUE if e.name.startswith("qwen3-vl-30b")} == {"vllm"}


def test_any_other_hub_id_is_pulled_as_itself_into_owner_dash_dash_name():
    ref = resolve("OpenGVLab/InternVL3-1B")
    assert (ref.local_name, ref.huggingface, ref.modelscope, ref.entry) == (
        "OpenGVLab--InternVL3-1B", "OpenGVLab/InternVL3-1B", "OpenGVLab/InternVL3-1B", None,
    )  # fmt: skip


@pytest.mark.parametrize("model", ["qwen9-vl", "a/b/c", "/abs/path", "../up/there", ""])
def test_a_string_that_is_neither_names_the_catalogue(model):
    with pytest.raises(UnknownModel, match="qwen3-vl-2b"):
        resolve(model)


def test_an_existing_path_is_served_as_a_path_and_a_name_from_the_data_dir(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qwen3-vl-4b").mkdir()  # a directory of that name here wins: a path that exists is a path
    assert checkpoint_dir(Path("qwen3-vl-4b"), data_dir) == Path("qwen3-vl-4b")
    assert checkpoint_dir(Path("qwen3-vl-2b"), data_dir) == data_dir / "models" / "qwen3-vl-2b"
    assert checkpoint_dir(Path("Qwen/Qwen3-VL-2B-Instruct"), data_dir) == data_dir / "models" / "qwen3-vl-2b"
    assert checkpoint_dir(tmp_path / "not-there", data_dir) == tmp_path / "not-there"  # a path: read_config says
