"""Log records carry the request id of the request they belong to."""

from __future__ import annotations

import logging

from vlserve.observability.request_id import current_request_id

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger("vlserve")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
