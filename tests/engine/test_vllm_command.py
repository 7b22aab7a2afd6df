"""The managed `vllm serve` command line, as vLLM 0.32 reads it.

Tool calling is on with Qwen3-VL's parser unless the operator picks one; the options vlserve owns cannot be set
through --vllm-args in any spelling vLLM accepts; the JSON options vlserve sets are merged with the operator's and
passed once; quantization takes vLLM 0.32's names.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from vlserve.engine.base import ChatTurn, EngineRequest, MediaItem
from vlserve.engine.capabilities import refuse_videos
from vlserve.engine.vllm.command import max_videos, vllm_command
from vlserve.engine.vllm.serve_flags import read_option, resolve
from vlserve.errors import ClientError
from vlserve.media.resize import ImageBudget
from vlserve.settings import Settings


def argv(tmp_path: Path, vllm_args: str | list[str] = "", **settings: object) -> list[str]:
    settings = Settings(engine="vllm", model=tmp_path, data_dir=tmp_path, vllm_args=vllm_args, **settings)
    budget = ImageBudget(64 * 1024, 256 * 1024, 32)
    return vllm_command(settings, model_dir=tmp_path, port=8123, api_key="k" * 32, budget=budget).argv


def read_as(args: list[str], option: str) -> list[str]:
    """The arguments vLLM 0.32 reads as ``option``, each with its value when it takes the next argument."""
    found = []
    for i, arg in enumerate(args):
        read = read_option(arg)
        if read is not None and resolve(read.name) == option:
            found.append(arg if "=" in arg or i + 1 == len(args) else f"{arg} {args[i + 1]}")
    return found


def json_value(args: list[str], option: str) -> dict:
    (found,) = read_as(args, option)  # once
    return json.loads(found.split(" ", 1)[1])


def test_tool_calls_are_parsed_with_the_hermes_parser_by_default(tmp_path):
    args = argv(tmp_path)
    assert args.count("--enable-auto-tool-choice") == 1
    assert args[args.index("--tool-call-parser") + 1] == "hermes"


@pytest.mark.parametrize("given", ["--tool-call-parser qwen3_xml", "--tool-call-parser=qwen3_xml"])
def test_an_operators_tool_call_parser_replaces_ours(tmp_path, given):
    args = argv(tmp_path, f"--max-num-seqs 8 {given}")
    assert "hermes" not in args and args[-len(given.split()) :] == given.split()  # theirs, last, once
    assert sum(a.startswith("--tool-call-parser") for a in args) == 1
    assert args.count("--enable-auto-tool-choice") == 1


def test_auto_tool_choice_given_again_by_the_operator_is_not_doubled(tmp_path):
    args = argv(tmp_path, "--enable-auto-tool-choice")
    assert args.count("--enable-auto-tool-choice") == 1 and args[-1] == "--enable-auto-tool-choice"


@pytest.mark.parametrize("theirs", ["--tool_call_parser qwen3_xml", "--tool-call-p=qwen3_xml"])
def test_a_tool_call_parser_in_another_spelling_replaces_ours_too(tmp_path, theirs):
    args = argv(tmp_path, theirs)
    assert "hermes" not in args and args[-len(theirs.split()) :] == theirs.split()
    assert len(read_as(args, "--tool-call-parser")) == 1


def test_tool_calling_turned_off_by_the_operator_stays_off(tmp_path):
    args = argv(tmp_path, "--no-enable-auto-tool-choice")
    assert "--enable-auto-tool-choice" not in args and args[-1] == "--no-enable-auto-tool-choice"


# --- options vlserve owns ---------------------------------------------------------------------------------------

OWNED_SPELLINGS = [
    ("--host 0.0.0.0", "--host"),
    ("--host=0.0.0.0", "--host"),
    ("--hos 0.0.0.0", "--host"),
    ("--ho=0.0.0.0", "--host"),
    ("--h 0.0.0.0", "--host"),  # several options start so; vLLM refuses it, vlserve names the one it owns
    ("--por 9999", "--port"),
    ("--port=9999", "--port"),
    ("--ud /tmp/vllm.sock", "--uds"),
    ("--uds=/tmp/vllm.sock", "--uds"),
    ("--api-key x", "--api-key"),
    ("--api_key x", "--api-key"),
    ("--api-k x", "--api-key"),
    ("--api=x", "--api-key"),
    ("--api-key.extra x", "--api-key"),  # a dotted option becomes --api-key '{"extra": "x"}'
    ("--served-model-name other", "--served-model-name"),
    ("--served_model_name other", "--served-model-name"),
    ("--serv other", "--served-model-name"),
    ("--model other/model", "--model"),
    ("--model=other/model", "--model"),
    ("--mod other/model", "--model"),
    ("--config vllm.yaml", "--config"),
    ("--config=vllm.yaml", "--config"),
    ("--conf vllm.yaml", "--config"),
    ("--max-num-seqs 8 --hos 0.0.0.0", "--host"),  # wherever it stands
]


@pytest.mark.parametrize(("vllm_args", "owned"), OWNED_SPELLINGS)
def test_an_option_vlserve_owns_is_refused_in_every_spelling_vllm_reads(tmp_path, vllm_args, owned):
    with pytest.raises(ValidationError) as refused:
        Settings(engine="vllm", data_dir=tmp_path, vllm_args=vllm_args)
    (error,) = refused.value.errors()
    message = error["msg"].removeprefix("Value error, ")
    written = [arg for arg in shlex.split(vllm_args) if arg.startswith("--")][-1].split("=")[0]
    assert error["loc"] == ("vllm_args",) and "\n" not in message
    assert message.startswith(f"{written} ") and owned in message  # the spelling given, and what it would set


def test_a_config_file_is_refused_even_one_setting_only_harmless_options(tmp_path):
    config = tmp_path / "vllm.yaml"
    config.write_text("max-num-seqs: 8\n")  # the file may change before vLLM reads it at a restart
    with pytest.raises(ValidationError, match="--config is refused: vLLM reads the file"):
        Settings(engine="vllm", data_dir=tmp_path, vllm_args=f"--config {config}")


@pytest.mark.parametrize("vllm_args", ["--model-impl vllm", "--config-format hf", "--max-model-len 4096", "--hosts a"])
def test_other_options_pass_through_as_written(tmp_path, vllm_args):
    """Other options' exact names are theirs; a name that abbreviates no owned option (--hosts) is vLLM's to judge."""
    args = argv(tmp_path, vllm_args)
    assert args[-len(vllm_args.split()) :] == vllm_args.split()
    assert args.count("--host") == 1 and args[args.index("--host") + 1] == "127.0.0.1"


def test_an_owned_option_in_vlserve_serve_is_one_line_before_anything_loads(tmp_path):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "vlserve.cli", "serve", "--engine", "vllm", "--vllm-args", "--hos 0.0.0.0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VLSERVE_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "invalid settings: vllm_args: --hos is read by vLLM as --host, which is set by vlserve: vLLM listens on "
        "127.0.0.1 only; set vlserve's own address with --host (VLSERVE_HOST)"
    )
    assert not (tmp_path / "data").exists()  # no demo model built, no model looked for
    assert time.monotonic() - started < 60


# --- JSON options vlserve and the operator both set --------------------------------------------------------------


@pytest.mark.parametrize(
    "theirs",
    [
        ["--limit-mm-per-prompt.image", "5"],
        ["--limit-mm-per-prompt.image=5"],
        ["--limit_mm_per_prompt.image", "5"],
        ["--limit-mm.image", "5"],
        ["--limit-mm-per-prompt", '{"image": 5}'],
        ['--limit-mm-per-prompt={"image":5}'],
        ["--limit-mm", '{"image": 5}'],
    ],
)
def test_an_operators_limit_per_prompt_is_merged_into_ours_and_passed_once(tmp_path, theirs):
    args = argv(tmp_path, ["--max-num-seqs", "8", *theirs], video=False)
    assert json_value(args, "--limit-mm-per-prompt") == {"image": 5, "video": 0}  # our video: 0 kept
    assert args[-2:] == ["--max-num-seqs", "8"]


def test_processor_kwargs_merge_key_by_key_across_forms(tmp_path):
    args = argv(
        tmp_path,
        """--mm-processor-kwargs.size.longest_edge 1M --mm-processor-kwargs '{"do_resize": true}' """
        "--limit-mm-per-prompt.video 1 --limit_mm_per_prompt.image=2",
        video=False,
    )
    kwargs = json_value(args, "--mm-processor-kwargs")
    assert kwargs == {"size": {"shortest_edge": 64 * 1024, "longest_edge": 1024 * 1024}, "do_resize": True}
    assert json_value(args, "--limit-mm-per-prompt") == {"image": 2, "video": 1}


# --- video ------------------------------------------------------------------------------------------------------


def checkpoint(tmp_path: Path, model_type: str) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    return tmp_path


def test_video_off_means_no_video_for_vllm(tmp_path):
    args = argv(checkpoint(tmp_path, "qwen3_vl_moe"), video=False)
    assert json_value(args, "--limit-mm-per-prompt")["video"] == 0
    assert read_as(args, "--media-io-kwargs") == []
    assert "videos_kwargs" not in json_value(args, "--mm-processor-kwargs")


def test_video_on_follows_the_video_settings(tmp_path):
    args = argv(
        checkpoint(tmp_path, "qwen3_vl_moe"), video=True, max_videos_per_request=3, video_fps=1.5, video_max_frames=33
    )
    assert json_value(args, "--limit-mm-per-prompt") == {"image": 8, "video": 3}
    # sampled as vlserve samples: its rate, and its frame cap (even) whichever loader vLLM picks
    assert json_value(args, "--media-io-kwargs") == {"video": {"fps": 1.5, "num_frames": 32, "max_frames": 32}}
    kwargs = json_value(args, "--mm-processor-kwargs")
    assert kwargs["size"] == {"shortest_edge": 64 * 1024, "longest_edge": 256 * 1024}  # images: the per-image budget
    assert kwargs["videos_kwargs"]["size"]["longest_edge"] == 24576 * 32 * 32  # Qwen3-VL's whole-video budget


def test_a_qwen2_5_vl_video_keeps_the_per_frame_size(tmp_path):
    kwargs = json_value(argv(checkpoint(tmp_path, "qwen2_5_vl"), video=True), "--mm-processor-kwargs")
    assert "videos_kwargs" not in kwargs


@pytest.mark.parametrize(
    "theirs",
    [
        ["--media-io-kwargs.video.num_frames", "16"],
        ["--media-io-kwargs", '{"video": {"num_frames": 16}}'],
        ["--media_io_kwargs.video.num_frames=16"],
    ],
)
def test_an_operators_media_io_kwargs_are_merged_into_ours_and_passed_once(tmp_path, theirs):
    args = argv(tmp_path, ["--max-num-seqs", "8", *theirs], video=True, video_fps=2.0, video_max_frames=64)
    assert json_value(args, "--media-io-kwargs") == {"video": {"fps": 2.0, "num_frames": 16, "max_frames": 64}}
    off = argv(tmp_path, theirs, video=False)
    assert json_value(off, "--media-io-kwargs") == {"video": {"num_frames": 16}}  # theirs alone
    assert json_value(off, "--limit-mm-per-prompt")["video"] == 0


@pytest.mark.parametrize(
    ("video", "vllm_args", "expected"),
    [
        (True, "", 2),
        (False, "", 0),
        (True, "--limit-mm-per-prompt.video 0", 0),
        (True, '--limit-mm-per-prompt \'{"video": {"count": 1, "num_frames": 8}}\'', 1),
    ],
)
def test_a_video_beyond_what_vllm_was_told_to_take_is_refused_naming_its_part(tmp_path, video, vllm_args, expected):
    settings = Settings(engine="vllm", model=tmp_path, data_dir=tmp_path, vllm_args=vllm_args, video=video)
    assert max_videos(settings) == expected
    parts = ({"type": "text", "text": "what happens?"}, {"type": "video"}, {"type": "video"})
    request = EngineRequest((ChatTurn("user", parts),), (MediaItem(Image.new("RGB", (32, 32)), "video"),) * 2)
    if expected >= 2:
        refuse_videos(request, max_videos(settings), engine="vllm")
        return
    with pytest.raises(ClientError) as refused:
        refuse_videos(request, max_videos(settings), engine="vllm")
    assert refused.value.param == f"messages[0].content[{expected + 1}].video_url"


@pytest.mark.parametrize(
    ("vllm_args", "says"),
    [
        ("--limit-mm-per-prompt image=5", "--limit-mm-per-prompt takes a JSON object"),
        ("--mm-processor-kwargs '[1, 2]'", "--mm-processor-kwargs takes a JSON object"),
        ("--max-num-seqs 8 --limit-mm-per-prompt", "--limit-mm-per-prompt needs a value"),
    ],
)
def test_a_json_option_that_is_not_an_object_is_refused_at_start(tmp_path, vllm_args, says):
    with pytest.raises(ValidationError, match=says):
        Settings(engine="vllm", data_dir=tmp_path, vllm_args=vllm_args)


# --- quantization -----------------------------------------------------------------------------------------------


def test_fp8_is_passed_by_its_vllm_032_name_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="vlserve.engine.vllm.command"):
        args = argv(tmp_path, vllm_quantization="fp8")
    assert read_as(args, "--quantization") == ["--quantization fp8_per_tensor"]
    (record,) = [r for r in caplog.records if "quantization" in r.getMessage()]
    assert record.getMessage() == "--quantization fp8: passing fp8_per_tensor, its name in vLLM 0.32.0"


@pytest.mark.parametrize(
    ("setting", "passed"),
    [("fp8_per_block", "fp8_per_block"), (" FP8_Per_Tensor ", "fp8_per_tensor"), ("awq_marlin", "awq_marlin")],
)
def test_vllm_032_quantization_names_are_passed_as_they_are(tmp_path, caplog, setting, passed):
    with caplog.at_level(logging.INFO, logger="vlserve.engine.vllm.command"):
        args = argv(tmp_path, vllm_quantization=setting)
    assert read_as(args, "--quantization") == [f"--quantization {passed}"]
    assert not caplog.records


@pytest.mark.parametrize("setting", [None, "", "  "])
def test_no_quantization_leaves_the_checkpoints_own(tmp_path, setting):
    assert not read_as(argv(tmp_path, vllm_quantization=setting), "--quantization")


def test_an_unknown_quantization_is_refused_with_the_names_vllm_accepts(tmp_path):
    with pytest.raises(ValidationError) as refused:
        Settings(engine="vllm", data_dir=tmp_path, vllm_quantization="fp4")
    (error,) = refused.value.errors()
    message = error["msg"]
    assert error["loc"] == ("vllm_quantization",) and "\n" not in message
    assert "unknown quantization 'fp4' for vLLM 0.32" in message
    assert all(name in message for name in ("fp8_per_tensor", "fp8_per_block", "awq", "compressed-tensors"))
