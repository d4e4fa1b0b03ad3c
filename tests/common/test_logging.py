"""Structured logs: JSON lines off a terminal, with the job id on every line about a job."""

from __future__ import annotations

import io
import json
import logging

from comfy_cloud.logging import JsonFormatter, _ContextFilter, job_context


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_ContextFilter())
    logger = logging.getLogger("test.structured")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def test_lines_inside_a_job_context_carry_the_job_id() -> None:
    logger, stream = _capture()
    with job_context("0b6c5f0e-1111-4222-8333-444455556666"):
        logger.info("submitted to ComfyUI")
    logger.info("not about a job")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["job_id"] == "0b6c5f0e-1111-4222-8333-444455556666"
    assert first["msg"] == "submitted to ComfyUI" and first["level"] == "INFO"
    assert "job_id" not in second


def test_an_explicit_job_id_wins_and_extra_fields_are_kept() -> None:
    logger, stream = _capture()
    with job_context("outer"):
        logger.warning("hand-off failed", extra={"job_id": "inner", "instance": "i-1"})
    line = json.loads(stream.getvalue())
    assert line["job_id"] == "inner" and line["instance"] == "i-1"


def test_exceptions_are_serialized_on_one_line() -> None:
    logger, stream = _capture()
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "ValueError: boom" in json.loads(lines[0])["exc"]
