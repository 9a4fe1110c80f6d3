"""Logging set-up (only the CLI calls it): JSON lines or plain text, levels DEBUG, INFO,
WARN, ERROR, FATAL.

A JSON line holds ``time`` (RFC 3339, UTC, ms), ``level``, ``logger``, ``message``, the
fields passed with ``extra={...}`` as top-level keys, and ``exception`` when there is one::

    {"time":"2026-11-21T12:00:00.123Z","level":"INFO","logger":"tradepulse.service.runner",
     "message":"Batch processing completed","total_trades":10000,"unique_tokens":812,...}
"""

from __future__ import annotations

import logging
import sys
import time

import msgspec

LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
          "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}  # fmt: skip
_NAMES = {logging.WARNING: "WARN", logging.CRITICAL: "FATAL"}
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_encoder = msgspec.json.Encoder(enc_hook=str)


def level_name(levelno: int) -> str:
    return _NAMES.get(levelno, logging.getLevelName(levelno))


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a call passed with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        line: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": level_name(record.levelno),
            "logger": record.name,
            "message": record.getMessage(),
            **extra_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = level_name(record.levelno)
        text = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in extra_fields(record).items())
        return f"{text} {fields}" if fields else text


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger to stderr at ``level`` in ``fmt`` (``json`` or ``text``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    logging.getLogger("kafka").setLevel(max(root.level, logging.WARNING))
