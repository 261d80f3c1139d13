"""Structured events: human console lines on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "console", "json"]


def configure(log_format: LogFormat = "auto", *, verbose: bool = False, stream=None,
              level: int | None = None) -> None:
    """``level`` overrides ``verbose``: a live view on the terminal keeps only warnings."""
    stream = stream or sys.stderr
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    renderer = (structlog.dev.ConsoleRenderer(colors=stream.isatty())
                if log_format == "console" else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            level if level is not None else logging.DEBUG if verbose else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**context):
    return structlog.get_logger().bind(**context)


def bind_run(**context) -> None:
    """Bind run-wide context (run id, strategy, release) to every following log line."""
    structlog.contextvars.bind_contextvars(**context)


def clear_run() -> None:
    structlog.contextvars.clear_contextvars()
