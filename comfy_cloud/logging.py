"""Structured logs: one JSON object per line when stderr is not a terminal, readable text when it is.

`job_context(job_id)` puts the job id on every log line written inside it (a contextvar, so it follows
the asyncio task), which makes `grep <job id>` show one job's whole story across services.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
_service: str = "comfy-cloud"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


@contextmanager
def job_context(job_id: object) -> Iterator[None]:
    token = _job_id.set(str(job_id))
    try:
        yield
    finally:
        _job_id.reset(token)


def current_job_id() -> str | None:
    return _job_id.get()


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            record.job_id = _job_id.get()
        record.service = _service
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "service": getattr(record, "service", _service),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "job_id", None):
            body["job_id"] = record.job_id  # type: ignore[attr-defined]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in body and key not in {"service", "job_id"}:
                body[key] = value
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        job = getattr(record, "job_id", None)
        line = f"{stamp} {record.levelname:<7} {getattr(record, 'service', _service)}: {record.getMessage()}"
        if job:
            line += f" [job {job}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    global _service
    _service = service
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
