"""Structured logs: JSON lines when stderr is not a terminal, with the ids that say which
conversation, job, agent and Celery task a line is about, and secrets redacted.

- `bind(conversation_id=..., job_id=..., agent=...)` sets context for the current thread
  or task (contextvars); `ContextFilter` copies it, and the running Celery task's id and
  name, onto every record. Ids given with `extra=` win.
- `RedactFilter` masks `sk-...` keys, `Bearer` tokens, `api_key=...` pairs and the value
  of `LLM_API_KEY` (and `AGENTQ_API_KEY`) in the message, its arguments and tracebacks,
  and the row values PostgreSQL quotes in its errors (`Failing row contains (...)`,
  `Key (name)=(...)`); the engines hide statement parameters (`hide_parameters`).
- `setup_logging()` installs both on the root handler; `connect_celery_signals()` does
  the same for the handlers Celery sets up in workers.

Message bodies are never logged at INFO by agentq itself: log ids and counts, not text.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

#: the context fields every record carries (None when unknown)
FIELDS = ("conversation_id", "job_id", "agent", "task_id", "task_name")
#: env vars whose values are secrets wherever they show up
SECRET_ENV = ("LLM_API_KEY", "AGENTQ_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
MASK = "[REDACTED]"

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "agentq_log_context",
    default={},  # noqa: B039 - never mutated, always replaced
)

_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=\-]+"),
    re.compile(r"(?i)(x-api-key|api[_-]?key|authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
]

#: row values PostgreSQL quotes in a constraint error's DETAIL (a message body, a name),
#: up to where SQLAlchemy's or Python's next part of the text starts
_ROW_DETAIL = re.compile(
    r"(Failing row contains ).*?(?=\n\[SQL:|\n\(Background on|\n\nThe above exception"
    r"|\n\nDuring handling|\Z)",
    re.DOTALL,
)
_KEY_DETAIL = re.compile(r"(\bKey \([^)]*\)=\().*?(\) (?:already exists|is not present))")


def bind(**fields: Any) -> contextvars.Token[dict[str, str]]:
    """Add `fields` to the log context of this thread or task; returns a reset token."""
    ctx = {**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    return _context.set(ctx)


def unbind(token: contextvars.Token[dict[str, str]] | None = None) -> None:
    """Undo a `bind` (with its token) or clear the context."""
    if token is not None:
        _context.reset(token)
    else:
        _context.set({})


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict[str, str]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Put the bound context and the current Celery task on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get()
        task = _current_task()
        if task is not None:
            ctx = {"task_id": task[0], "task_name": task[1], **ctx}
        for name in FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, ctx.get(name))
        return True


def _current_task() -> tuple[str, str] | None:
    if "celery" not in sys.modules:
        return None
    from celery import current_task

    try:
        if current_task and current_task.request and current_task.request.id:
            return current_task.request.id, current_task.name
    except Exception:  # noqa: BLE001 - outside a task there is nothing to add
        return None
    return None


def _secret_values() -> list[str]:
    # Short values would mask ordinary words; real keys are long.
    return [v for v in (os.environ.get(n, "") for n in SECRET_ENV) if len(v) >= 8]


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with known secret values and secret-shaped tokens masked."""
    for value in _secret_values() if secrets is None else secrets:
        text = text.replace(value, MASK)
    for i, pattern in enumerate(_PATTERNS):
        if i == 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        else:
            text = pattern.sub(MASK if i == 0 else "Bearer " + MASK, text)
    if "Failing row" in text or "Key (" in text:
        text = _ROW_DETAIL.sub(lambda m: m.group(1) + MASK, text)
        text = _KEY_DETAIL.sub(lambda m: m.group(1) + MASK + m.group(2), text)
    return text


class RedactFilter(logging.Filter):
    """Mask secrets in the rendered message and the traceback of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _secret_values()
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logged as it is
            message = str(record.msg)
        clean = redact(message, secrets)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, context ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """The human format, with the context ids that are set appended as k=v."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{n}={getattr(record, n)}" for n in FIELDS if getattr(record, n, None) is not None
        )
        return f"{line} [{ids}]" if ids else line


def use_json(stream: Any = None) -> bool:
    """JSON unless the stream is a terminal; AGENTQ_LOG_FORMAT=json|text decides first."""
    forced = os.environ.get("AGENTQ_LOG_FORMAT", "").lower()
    if forced in ("json", "text"):
        return forced == "json"
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def install(handler: logging.Handler, *, json_lines: bool | None = None) -> None:
    """Give `handler` the context and redaction filters and agentq's formatter (once)."""
    if any(isinstance(f, RedactFilter) for f in handler.filters):
        return
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    stream = getattr(handler, "stream", None)
    handler.setFormatter(
        JSONFormatter()
        if (use_json(stream) if json_lines is None else json_lines)
        else TextFormatter()
    )


def setup_logging(level: str | int = "INFO", *, json_lines: bool | None = None) -> None:
    """Configure the root logger: one stderr handler, filtered and formatted."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        install(handler, json_lines=json_lines)
    root.setLevel(level)


#: the id a task's first argument is, by task name (task arguments are ids only)
_TASK_ARG = {
    "agentq.dispatch": "conversation_id",
    "agentq.advance": "conversation_id",
    "agentq.run_job": "job_id",
    "agentq.complete": "job_id",
}


def connect_celery_signals() -> None:
    """Filter and format the handlers Celery sets up; bind each task's id argument."""
    from celery.signals import (
        after_setup_logger,
        after_setup_task_logger,
        task_postrun,
        task_prerun,
    )

    @after_setup_logger.connect(weak=False)
    @after_setup_task_logger.connect(weak=False)
    def _handlers(logger: logging.Logger | None = None, **_: object) -> None:
        for handler in logger.handlers if logger else []:
            install(handler)

    @task_prerun.connect(weak=False)
    def _bind(task: Any = None, args: Any = None, **_: object) -> None:
        field = _TASK_ARG.get(getattr(task, "name", ""))
        _context.set({field: str(args[0])} if field and args else {})

    @task_postrun.connect(weak=False)
    def _unbind(**_: object) -> None:
        _context.set({})
