"""A stand-in `vllm` executable for machines without a GPU: `vllm serve MODEL --host H --port P …` runs
`vlserve serve` on MODEL instead, so it speaks the real OpenAI protocol over HTTP.

It accepts vLLM's flags and applies the ones vlserve can (served name, context length, images per
prompt, the pixel budget). Each start appends one JSON line to
``$FAKE_VLLM_RECORD``: the arguments, the pid, whether ``VLLM_API_KEY`` was set and whether it also
appears on the command line. With
``FAKE_VLLM_EXIT=<code>`` it exits at once instead, like a vLLM that fails to start.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def install(bin_dir: Path) -> Path:
    """Write the `vllm` command into ``bin_dir`` (put that first on PATH); returns its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "vllm"
    script.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" -m tests.support.fake_vllm "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vllm")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--limit-mm-per-prompt", type=json.loads, default={})
    parser.add_argument("--mm-processor-kwargs", type=json.loads, default={})
    args, _ = parser.parse_known_args(argv)
    return args


def main() -> None:
    argv = sys.argv[1:]
    args = _parse(argv)
    record = os.environ.get("FAKE_VLLM_RECORD")
    if record:
        key = os.environ.get("VLLM_API_KEY", "")
        entry = {"argv": argv, "pid": os.getpid(), "api_key_set": len(key) >= 32, "key_in_argv": key in " ".join(argv)}
        with open(record, "a") as out:
            out.write(json.dumps(entry) + "\n")
    print(f"fake vllm {os.getpid()}: serve {args.model} on {args.host}:{args.port}", flush=True)
    if os.environ.get("FAKE_VLLM_EXIT"):
        print("fake vllm: failing at start on purpose", flush=True)
        sys.exit(int(os.environ["FAKE_VLLM_EXIT"]))
    size = args.mm_processor_kwargs.get("size", {})
    settings = {
        "ENGINE": "transformers",
        "DOCUMENT_WORKER": "false",
        "DATA_DIR": os.environ.get("FAKE_VLLM_DATA", str(Path(record or "/tmp").parent / "fake-vllm-data")),
        "MAX_MODEL_LEN": args.max_model_len,
        "MAX_IMAGES_PER_REQUEST": args.limit_mm_per_prompt.get("image"),
        "MIN_PIXELS": size.get("shortest_edge"),
        "MAX_PIXELS": size.get("longest_edge"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
    env.update({f"VLSERVE_{k}": str(v) for k, v in settings.items() if v is not None})
    command = ["serve", "--model", args.model, "--host", args.host, "--port", str(args.port)]
    command += ["--served-model-name", args.served_model_name]
    os.execve(sys.executable, [sys.executable, "-m", "vlserve.cli", *command], env)


if __name__ == "__main__":
    main()
