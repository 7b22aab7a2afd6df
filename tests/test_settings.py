"""Settings: environment variables, validation at start, and the configuration reference documenting every one."""

import re

import pytest
from pydantic import ValidationError

from vlserve.settings import SETTING_GROUPS, Settings, reference


def test_every_setting_has_a_description():
    missing = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert missing == []


def test_the_setting_groups_hold_every_setting_once_in_the_settings_order():
    grouped = [name for _, group in SETTING_GROUPS for name in group.model_fields]
    assert grouped == list(Settings.model_fields)  # each once, and in the order errors and the reference list them
    assert len({title for title, _ in SETTING_GROUPS}) == len(SETTING_GROUPS)


def test_the_reference_names_every_setting_and_nothing_else():
    page = reference.markdown()
    variables = {f"VLSERVE_{name.upper()}" for name in Settings.model_fields}
    rows = set(re.findall(r"^\| `(VLSERVE_\w+)` \|", page, flags=re.MULTILINE))
    assert rows == variables  # one table row per setting
    assert set(re.findall(r"VLSERVE_[A-Z0-9_]*[A-Z0-9]", page)) == variables  # no variable that is not a setting
    for title, _ in SETTING_GROUPS:
        assert f"\n## {title}\n" in page


def test_the_reference_tables_keep_their_shape():
    rows = [line for line in reference.markdown().splitlines() if line.startswith("| `VLSERVE_")]
    assert len(rows) == len(Settings.model_fields)
    for row in rows:  # a "|" in a cell is escaped, so every row has its three cells
        assert len(re.findall(r"(?<!\\)\|", row)) == 4, row
    assert "| `VLSERVE_PORT` | `8080` |" in "\n".join(rows)
    assert "| `VLSERVE_MAX_BODY_BYTES` | `33554432` (32 MiB) |" in "\n".join(rows)


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("VLSERVE_MAX_BATCH_SIZE", "2")
    monkeypatch.setenv("VLSERVE_URL_ALLOWLIST", "10.0.0.0/8, images.internal")
    settings = Settings()
    assert settings.max_batch_size == 2
    assert settings.url_allowlist == ["10.0.0.0/8", "images.internal"]


def test_allowlist_as_json_list(monkeypatch):
    monkeypatch.setenv("VLSERVE_URL_ALLOWLIST", '["192.168.0.0/16"]')
    assert Settings().url_allowlist == ["192.168.0.0/16"]


@pytest.mark.parametrize(
    "bad",
    [{"max_batch_size": 0}, {"min_pixels": 2_000_000, "max_pixels": 1_000_000}, {"url_allowlist": ["10.0.0.0/33"]}],
)
def test_invalid_settings_are_refused_at_start(bad):
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_default_model_is_the_bundled_demo(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.model_dir() == tmp_path / "models" / "vlserve-demo-random"
    assert settings.model_name() == "vlserve-demo-random"
    assert Settings(model=tmp_path / "Qwen3-VL-30B-A3B-Instruct").model_name() == "Qwen3-VL-30B-A3B-Instruct"


def test_engine_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("VLSERVE_ENGINE", "remote")
    monkeypatch.setenv("VLSERVE_UPSTREAM", "http://vllm-a:8000/v1, http://vllm-b:8000")
    monkeypatch.setenv("VLSERVE_UPSTREAM_API_KEY", "sk-secret")
    monkeypatch.setenv("VLSERVE_VLLM_ARGS", "--max-num-seqs 16 --kv-cache-dtype fp8")
    settings = Settings()
    assert settings.upstream == ["http://vllm-a:8000/v1", "http://vllm-b:8000"]
    assert settings.vllm_args == ["--max-num-seqs", "16", "--kv-cache-dtype", "fp8"]
    assert "sk-secret" not in repr(settings)  # a secret, never printed with the settings
    assert settings.model_name() == ""  # remote: the upstream's model, learnt at start


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"engine": "remote"}, "needs at least one upstream"),
        ({"upstream": ["http://vllm:8000"]}, "engine is not remote"),
        ({"engine": "remote", "upstream": ["vllm:8000"]}, "must start with http"),
        ({"engine": "vllm", "vllm_args": "--host 0.0.0.0"}, "--host is set by vlserve"),
        ({"engine": "vllm", "vllm_args": "--api-key=abc"}, "--api-key is set by vlserve"),
    ],
)
def test_engine_mistakes_are_refused_at_start(bad, says):
    with pytest.raises(ValidationError, match=says):
        Settings(**bad)
