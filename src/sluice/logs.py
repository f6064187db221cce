"""Structured JSON logs, one object per line. Secrets never reach here: log call sites pass
display prefixes, never keys, and ``redact`` scrubs anything key-shaped that slips through."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import orjson

_SECRETISH = re.compile(
    r"(lw_vk_(?:live|test)_[0-9A-Z]{7})[0-9A-Za-z]+|(sk-ant-[a-z0-9]{0,6})[\w-]+"
)
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


# A credential header written out as text (an upstream or proxy echoing a request back):
# its value goes, whatever its shape.
_HEADERISH = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-goog-api-key)"
    r"(\"?\s*[:=]\s*\"?)(?:(?:bearer|basic)\s+)?[^\s\"',;<>]+"
)


def redact(text: str) -> str:
    text = _HEADERISH.sub(lambda m: m.group(1) + m.group(2) + "[redacted]", text)
    return _SECRETISH.sub(lambda m: (m.group(1) or m.group(2) or "") + "…[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                payload[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(payload, default=str).decode()


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log and uvicorn's would repeat what our request line says.
    logging.getLogger("uvicorn.access").disabled = True
