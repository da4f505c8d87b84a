"""Structured JSON logs through the standard `logging` module, with structlog.

Records go through stdlib logging so that handlers and pytest's `caplog` see
them; structlog renders each one as a JSON line. A last processor drops any
field whose name suggests a secret or a body, whatever a caller passed.

The access line, written once per request, skips structlog's processor chain:
`log_request` renders its fixed fields, none of them sensitive, in one step.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import msgspec
import structlog

__all__ = [
    "ACCESS_LOGGER",
    "SERVER_LOGGER",
    "configure_logging",
    "drop_sensitive",
    "log_request",
]

ACCESS_LOGGER: Final = "kratos_webhooks.access"
SERVER_LOGGER: Final = "kratos_webhooks.server"

# Field names that never reach a log line, compared in lower case.
_SENSITIVE: Final = frozenset(
    {
        "authorization",
        "body",
        "cookie",
        "cookies",
        "csrf_token",
        "password",
        "payload",
        "request_cookies",
        "secret",
        "secrets",
        "signature",
        "webhook-signature",
    }
)

# Fields a stdlib record may carry in `extra`, such as the delivery worker's,
# that become fields of its JSON line.
RECORD_FIELDS: Final = (
    "attempt",
    "error",
    "event_id",
    "retry_in_seconds",
    "route",
    "webhook_id",
)

_shared_processors: list[structlog.typing.Processor] = [
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def drop_sensitive(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Remove fields named like a secret, a cookie, a signature or a body."""
    for key in [key for key in event if key.lower() in _SENSITIVE]:
        del event[key]

    return event


class _LineFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, passing lines that `log_request` rendered as they are."""

    def format(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get("rendered")

        if isinstance(line, str):
            return line

        return super().format(record)


_access_logger = logging.getLogger(ACCESS_LOGGER)
_encode = msgspec.json.Encoder().encode


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _timestamp(now: float) -> str:
    """Return `now` as ISO 8601 in UTC with microseconds, as structlog writes it."""
    second = int(now)
    micro = int((now - second) * 1_000_000)
    return f"{_second_text(second)}.{micro:06d}Z"


def log_request(
    *,
    method: str | None,
    route: str,
    source: str | None,
    status: int,
    reason: str,
    webhook_id: str | None,
    latency_ms: float,
) -> None:
    """Write the access line of one request: the fields of a structlog line, cheaper.

    The fields are fixed and hold no secret, cookie, signature or body, so
    `drop_sensitive` would keep all of them.
    """
    logger = _access_logger

    if not logger.isEnabledFor(logging.INFO):
        return

    event = {
        "method": method,
        "route": route,
        "source": source,
        "status": status,
        "reason": reason,
        "webhook_id": webhook_id,
        "latency_ms": latency_ms,
        "event": "request",
        "logger": ACCESS_LOGGER,
        "level": "info",
        "timestamp": _timestamp(time.time()),
    }
    # Like structlog's records, the message is the event dict, so handlers and
    # caplog see the fields. No caller lookup: `logger` names the source.
    record = logger.makeRecord(ACCESS_LOGGER, logging.INFO, "", 0, event, (), None)
    record.__dict__["rendered"] = _encode(event).decode()
    logger.handle(record)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send the service's logs, uvicorn's included, as JSON lines to `stream`."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors,
            drop_sensitive,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = _LineFormatter(
        foreign_pre_chain=[
            *_shared_processors,
            structlog.stdlib.ExtraAdder(allow=RECORD_FIELDS),
            drop_sensitive,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())

    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True

    # The access logger below replaces uvicorn's, which would log full URLs.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs each request's full URL, query string included, at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
