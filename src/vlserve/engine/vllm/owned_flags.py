"""The `vllm serve` options vlserve sets itself, which ``--vllm-args`` may not set in any spelling vLLM reads.

vLLM stays on loopback, on the port vlserve picked, with the key vlserve gave it (``VLLM_API_KEY``; a key on vLLM's
command line would replace it, and vlserve's own requests would then get 401), serving the checkpoint vlserve
checked under the name clients send. vLLM reads ``--api_key`` as ``--api-key``, ``--api-key.x`` as ``--api-key``
with a JSON value, and any prefix that names no other option as the option it abbreviates (serve_flags explains
how), so an option counts as owned when its name, read that way, is an owned option or a prefix of one that is no
other option's exact name. A prefix shared with other options (``--mo``) is refused as well: vLLM would refuse it.

``--config FILE`` is refused outright: vLLM reads the YAML file at each (re)start of the child, after vlserve's
checks, and its keys become options like any other, owned ones included; the same options go in ``--vllm-args``.
"""

from __future__ import annotations

from vlserve.engine.vllm.serve_flags import LONG_OPTIONS, Option, resolve

# Each owned option, with what vlserve sets instead.
OWNED = {
    "--host": "vLLM listens on 127.0.0.1 only; set vlserve's own address with --host (VLSERVE_HOST)",
    "--port": "vlserve picks vLLM's loopback port; set vlserve's own port with --port (VLSERVE_PORT)",
    "--uds": "vlserve reaches vLLM on a loopback port it picks; set vlserve's own address with --host and --port",
    "--api-key": "vlserve gives vLLM a key of its own in VLLM_API_KEY, which a key on vLLM's command line would "
    "replace; clients use vlserve's API keys",
    "--served-model-name": "set the model id clients send with --served-model-name (VLSERVE_SERVED_MODEL_NAME)",
    "--model": "set the checkpoint with --model (VLSERVE_MODEL)",
    "--config": "vLLM reads the file at each start of the child, after vlserve's checks, and its keys may set "
    "options vlserve owns; give its options in --vllm-args instead",
}


def owned_option(option: Option) -> str | None:
    """The owned option ``option`` sets or may abbreviate, or None."""
    if option.name in OWNED:
        return option.name
    if option.name in LONG_OPTIONS or len(option.name) <= 2:
        return None  # another option's exact name; a bare "--" vLLM refuses itself
    return next((owned for owned in OWNED if owned.startswith(option.name)), None)


def refusal(option: Option, owned: str) -> str:
    """One line naming the option as written, the owned option vLLM may read it as, and what vlserve sets."""
    verb = "is refused" if owned == "--config" else "is set by vlserve"
    if option.written == owned:
        return f"{owned} {verb}: {OWNED[owned]}"
    read_as = "is read by vLLM as" if resolve(option.name) == owned else "abbreviates (among other options)"
    return f"{option.written} {read_as} {owned}, which {verb}: {OWNED[owned]}"
