"""Structured logs: JSON lines when stderr is not a terminal, with the ids that say which
conversation, job, agent and Celery task a line is about, and secrets redacted.

- `bind(conversation_id=..., job_id=..., agent=...)` sets context for the current thread
  or task (contextvars); `ContextFilter` copies it, and the running Celery task's id and
  name, onto every record. Ids given with `extra=` win.
- `RedactFilter` masks, in the message, its arguments and tracebacks: agentq's own API
  keys (`aq_` and 43 random characters, as `agentq.ops.keys` mints them), `sk-...` keys,
  `Bearer` tokens, `api_key=...` pairs, the password of a URL (`://user:password@`), the
  values of the secrets configured in the environment (`LLM_API_KEY`, the console's
  operator and viewer keys, the metrics token, and any variable named `*_KEY`, `*_TOKEN`,
  `*_SECRET` or `*_PASSWORD`, such as a model profile's `api_key_env`) or registered with
  `add_secrets` (settings read from `.env`), and the row values PostgreSQL quotes in its
  errors (`Failing row contains (...)`, `Key (name)=(...)`); the engines hide statement
  parameters (`hide_parameters`). Every pattern is compiled once; most are tried only
  when a cheap substring test says they could match.
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
SECRET_ENV = (
    "LLM_API_KEY",
    "AGENTQ_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AGENTQ_CONSOLE_OPERATOR_KEY",
    "AGENTQ_CONSOLE_VIEWER_KEY",
    "AGENTQ_METRICS_TOKEN",
)
#: other env vars whose names say they hold a secret (a model profile's `api_key_env`)
SECRET_NAME = re.compile(r"(?:^|_)(?:KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
#: values shorter than this are not masked by value: they would mask ordinary words
#: (real keys are long)
MIN_SECRET_CHARS = 8
MASK = "[REDACTED]"

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "agentq_log_context",
    default={},  # noqa: B039 - never mutated, always replaced
)

#: agentq's API keys: `aq_` and token_urlsafe(32) (agentq.ops.keys.create_key); the
#: first 10 characters alone (what `agentq keys list` shows) are left readable
_AQ_KEY = re.compile(r"(?<![A-Za-z0-9])aq_[A-Za-z0-9_\-]{20,}")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")
_BEARER = re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=\-]+")
_KEY_PAIR = re.compile(
    r"(?i)(x-api-key|api[_-]?key|authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"
)
#: the password in a URL's user info (`AGENTQ_FLOWER_URL`, a database URL)
_URL_PASSWORD = re.compile(r"(://[^\s:/@]*:)[^\s/@]+@")

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


#: secret values registered by code that reads them from elsewhere than the environment
_registered: tuple[str, ...] = ()
#: (how many env vars there were, the names among them that hold secrets): the names
#: are looked for again only when the environment gains or loses a variable
_names: tuple[int, tuple[str, ...]] = (-1, ())


def add_secrets(*values: str | None) -> None:
    """Mask these values in every log line from now on (settings read from `.env` or a
    file, which the environment does not show). Short or empty values are ignored."""
    global _registered
    new = {v for v in values if v and len(v) >= MIN_SECRET_CHARS} - set(_registered)
    if new:
        _registered = (*_registered, *sorted(new, key=len, reverse=True))


def _secret_names() -> tuple[str, ...]:
    global _names
    count = len(os.environ)
    if _names[0] != count:
        found = {n for n in os.environ if SECRET_NAME.search(n)}
        _names = (count, tuple(sorted(found | set(SECRET_ENV))))
    return _names[1]


def _secret_values() -> list[str]:
    values = [v for v in map(os.environ.get, _secret_names()) if v and len(v) >= MIN_SECRET_CHARS]
    values.extend(_registered)
    # longest first: a secret that contains another is masked whole
    return sorted(values, key=len, reverse=True) if len(values) > 1 else values


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` with known secret values (`secrets`, default: the configured ones) and
    secret-shaped tokens masked."""
    for value in _secret_values() if secrets is None else secrets:
        if value:
            text = text.replace(value, MASK)
    if "aq_" in text:
        text = _AQ_KEY.sub(MASK, text)
    if "sk-" in text:
        text = _SK_KEY.sub(MASK, text)
    text = _BEARER.sub("Bearer " + MASK, text)
    text = _KEY_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)
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
