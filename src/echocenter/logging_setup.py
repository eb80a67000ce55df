"""Structured process logs: one event name plus key=value fields per line."""

from __future__ import annotations

import logging
from typing import Any


class _KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        base = f"{when} {record.levelname:<7} {record.name} {record.getMessage()}"
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            base += " " + " ".join(f"{k}={v!r}" for k, v in fields.items())
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_KeyValueFormatter())
    root = logging.getLogger("echocenter")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = True


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})
