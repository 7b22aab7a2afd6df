"""One log format for the whole server: vlserve's lines, uvicorn's and third-party warnings alike.

``VLSERVE_LOG_FORMAT=text`` (the default) writes readable lines::

    2026-01-02 10:00:00,123 INFO vlserve.access [3f2a…] POST /v1/chat/completions 200 41.2 ms key=k1 model=m …

``json`` writes one JSON object per line with ``time``, ``level``, ``logger``, ``message`` and ``trace_id`` (null
outside a request); an access line (:mod:`vlserve.observability.access_log`) adds its fields (``method``,
``path``, ``status``, ``latency_ms``, ``key_id``, ``model``, ``prompt_tokens``, ``completion_tokens``,
``cache``). :func:`log_config` is the ``logging.config.dictConfig`` dictionary, given to uvicorn too, so its
error log goes through the same handler; its access log is off (vlserve writes its own).
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from vlserve.observability.request_id import current_request_id

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
ACCESS = "access"  # the attribute (``extra={"access": {...}}``) holding an access line's fields


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": None if request_id == "-" else request_id,
        }
        fields = getattr(record, ACCESS, None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def log_config(level: str, fmt: str = "text") -> dict[str, Any]:
    """The ``dictConfig`` of the server's logging: one handler on the root logger, vlserve and uvicorn at
    ``level``, everything else at warning (or ``level`` when higher), uvicorn's access log off."""
    level = level.upper()
    root_level = level if logging.getLevelName(level) > logging.WARNING else "WARNING"
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"vlserve": formatter},
        "handlers": {
            "vlserve": {
                "class": "logging.StreamHandler",
                "formatter": "vlserve",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "vlserve": {"level": level, "handlers": [], "propagate": True},
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level, "handlers": [], "propagate": False},
        },
        "root": {"level": root_level, "handlers": ["vlserve"]},
    }


def configure_logging(level: str, fmt: str = "text") -> None:
    logging.config.dictConfig(log_config(level, fmt))
    logging.captureWarnings(True)  # warnings.warn(...) lines in the same format
