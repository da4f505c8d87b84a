"""Structured JSON logs through the standard `logging` module, with structlog.

Records go through stdlib logging so that handlers and pytest's `caplog` see
them; structlog renders each one as a JSON line. A last processor drops any
field whose name suggests a secret or a body, whatever a caller passed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog

__all__ = ["ACCESS_LOGGER", "SERVER_LOGGER", "configure_logging", "drop_sensitive"]

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
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors, drop_sensitive],
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
