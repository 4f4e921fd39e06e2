"""The process's log lines: one format for every logger, a level, and the pass's context.

Every module logs with the standard library (``logging.getLogger("dealsync.…")``), and
so do the libraries (uvicorn, urllib3, APScheduler). :func:`configure_logging` puts one
handler on the root logger whose formatter is structlog's ``ProcessorFormatter``, so all
of them come out alike: a UTC timestamp, the level, the logger, the message, then the
context as ``key=value`` (``--log-format text``) or one JSON object per line
(``--log-format json``, for a log shipper).

The context is bound with :func:`bind` / :func:`bound` (structlog's contextvars): a pass binds its
``connection`` and ``run_id``, so every line logged while it runs — the engine's, the
hooks', the outbox's, the HubSpot transport's — carries them, in its own thread.

No contact's e-mail address and no bearer token reaches a line: the formatter masks
both (the code logs ids, not addresses; this is the net under it, for a library's or
an SMTP server's message that quotes one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import structlog

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

_EMAIL = re.compile(r"[\w.+-]+@([\w-]+\.)+[\w-]{2,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[\w.~+/-]{8,}")
_FIRST = ("timestamp", "level", "logger", "event")


def _masked(text: str) -> str:
    text = _EMAIL.sub("<e-mail>", text)
    return _BEARER.sub(r"\1<redacted>", text)


def _mask(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask e-mail addresses and bearer tokens in every string of the line."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = _masked(value)
    return event


def _render_text(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """``2026-12-01T16:05:00.123Z INFO    dealsync.engine: pass finished  connection=acme
    run_id=3``, then the traceback if any: one line per event, greppable."""
    head = (
        f"{event.pop('timestamp', '')} {str(event.pop('level', '')).upper():<7} "
        f"{event.pop('logger', '')}: {event.pop('event', '')}"
    )
    trace = event.pop("exception", None)
    context = " ".join(f"{k}={v}" for k, v in sorted(event.items()))
    line = f"{head}  {context}" if context else head
    return f"{line}\n{trace}" if trace else line


def _render_json(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> str:
    """One JSON object per line, the fixed keys first."""
    ordered = {k: event.pop(k) for k in _FIRST if k in event}
    return json.dumps({**ordered, **event}, default=str, ensure_ascii=False)


class _Stderr(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (a test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``--log-format`` ``fmt`` (``text`` or ``json``)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="%Y-%m-%dT%H:%M:%S.%fZ", utc=True),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _mask,
            _render_json if fmt == "json" else _render_text,
        ],
    )


def configure_logging(level: str = "warning", fmt: str = "text") -> None:
    """Send every logger's lines at ``level`` and above to stderr in format ``fmt``.
    Called again (each CLI invocation, ``serve`` raising the default to info) it
    replaces its own handler rather than adding one."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    wanted = logging.getLevelNamesMapping()[level.upper()]
    handler = _Stderr(wanted)
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    # the handler filters; the root is only opened up to it, never closed down, so a
    # handler put there by someone else (pytest's log capture) keeps what it asked for
    if root.level > wanted:
        root.setLevel(wanted)
    # set by an earlier ``serve`` of this process; the root's level decides now
    logging.getLogger("dealsync").setLevel(logging.NOTSET)


def bind(**context: Any) -> dict[str, Any]:
    """Every line logged from now on (in this thread or task) carries ``context``,
    until :func:`unbind` is given what this returned."""
    return dict(structlog.contextvars.bind_contextvars(**context))


def unbind(tokens: Mapping[str, Any]) -> None:
    """Undo :func:`bind` (the values before it are back)."""
    structlog.contextvars.reset_contextvars(**tokens)


@contextlib.contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Every line logged in this block (in this thread or task) carries ``context``."""
    with structlog.contextvars.bound_contextvars(**context):
        yield
