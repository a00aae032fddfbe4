"""Structured logs: JSON lines when stderr is not a terminal, with the ids that say which
conversation, job, agent and Celery task a line is about, and secrets redacted.

- `bind(conversation_id=..., job_id=..., agent=...)` sets context for the current thread
  or task (contextvars); `ContextFilter` copies it, and the running Celery task's id and
  name, onto every record. Ids given with `extra=` win.
- `RedactFilter` masks, in the message, its arguments and tracebacks: agentq's own API
  keys (`aq_` and 43 random characters, as `agentq.ops.keys` mints them, also right
  after an escape such as `\\n` or a `%XX`), `sk-...` keys, `Bearer` tokens,
  `name=value` / `name: value` pairs named like a credential (`api_key`,
  `Authorization`, `Cookie`, the console's `agentq_console` session and CSRF token,
  `*_token`, `password`, `secret`), the password of a URL (`://user:password@`, up to
  the last `@`), the values of the secrets configured in the environment
  (`LLM_API_KEY`, the console's operator and viewer keys, the metrics token, and any
  variable named `*_KEY`, `*_TOKEN`, `*_SECRET` or `*_PASSWORD`) or registered with
  `add_secrets` (settings read from `.env`, a model profile's key whatever its
  variable's name), each also in its repr(), JSON and URL-encoded forms, and the row
  values PostgreSQL quotes in its errors (`Failing row contains (...)`,
  `Key (name)=(...) already exists`); the engines hide statement parameters
  (`hide_parameters`). Every pattern is compiled once, tried only when a cheap
  substring test says it could match, and runs in time linear in the line; the
  configured values are recomputed only when the environment's names, their values or
  the registered ones change (about 2 microseconds a typical line in all).
- `setup_logging()` installs both on the root handler; `connect_celery_signals()` does
  the same for the handlers Celery sets up in workers, `redact_handlers()` adds the
  redaction to uvicorn's own handlers (keeping the arguments its access log reads).

Message bodies are never logged at INFO by agentq itself: log ids and counts, not text.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus

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

#: agentq's API keys: `aq_` and token_urlsafe(32) (agentq.ops.keys.create_key), also
#: right after an escape (`\\n` in a repr or JSON, `\\u00e9`) or a `%XX` (a URL-encoded
#: query); the first 10 characters alone (what `agentq keys list` shows) stay readable
_AQ_KEY = re.compile(
    r"(?:(?<![A-Za-z0-9])|(?<=\\[abfnrtv0])|(?<=\\x[0-9A-Fa-f]{2})"
    r"|(?<=\\u[0-9A-Fa-f]{4})|(?<=%[0-9A-Fa-f]{2}))aq_[A-Za-z0-9_\-]{20,}"
)
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")
_BEARER = re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=\-]+")
#: `name: value` / `name=value` pairs whose value is a credential: API keys, the
#: Authorization header, cookies (the console's session, `agentq_console`), CSRF and
#: other `*_token`s, passwords and secrets
_KEY_PAIR = re.compile(
    r"(?i)(x-api-key|api[_-]?key|authorization|cookie|agentq_console|csrf[_-]?token"
    r"|[_-]token|passw(?:or)?d|secret)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"
)
#: the cheap test that `_KEY_PAIR` could match (a lower-cased line holds one of these)
_KEY_PAIR_HINTS = ("key", "auth", "cookie", "agentq_console", "token", "passw", "secret")
#: the password in a URL's user info (`AGENTQ_FLOWER_URL`, a database URL), up to the
#: authority's last `@` (a password may hold an unencoded `@`, as urlsplit and redis-py
#: read it)
_URL_PASSWORD = re.compile(r"(://[^\s:/@]*:)[^\s/]+@")

#: row values PostgreSQL quotes in a constraint error's DETAIL (a message body, a name),
#: up to where SQLAlchemy's or Python's next part of the text starts
_ROW_DETAIL = re.compile(
    r"(Failing row contains ).*?(?=\n\[SQL:|\n\(Background on|\n\nThe above exception"
    r"|\n\nDuring handling|\Z)",
    re.DOTALL,
)
#: `Key (columns)=(values) already exists` / `... is not present`: the values are masked
#: from the first `Key (...)=(` of the anchor's line (found by `_mask_key_details`, in
#: time linear in the line: a regex with `.*?` from every `Key (` was quadratic)
_KEY_START = re.compile(r"\bKey \([^)\n]{0,200}\)=\(")
_KEY_END = re.compile(r"\) (?:already exists|is not present)")


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
#: (as given; `_registered_set` for a cheap "seen already")
_registered: tuple[str, ...] = ()
_registered_set: frozenset[str] = frozenset()


def add_secrets(*values: str | None) -> None:
    """Mask these values in every log line from now on (settings read from `.env` or a
    file, which the environment does not show). Short or empty values are ignored."""
    global _registered, _registered_set
    new = {v for v in values if v and len(v) >= MIN_SECRET_CHARS and v not in _registered_set}
    if new:
        _registered = (*_registered, *sorted(new))
        _registered_set = frozenset(_registered)


def secret_forms(value: str) -> set[str]:
    """`value` as it shows up in a log line: as it is, escaped by repr() or JSON (with and
    without `ensure_ascii`), and URL-encoded (path and form)."""
    return {
        value,
        repr(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }


class _Secrets:
    """The secret values to mask, recomputed only when something they come from changed:
    the environment's variable names (compared as a tuple of the very key objects
    `os.environ` holds, so a variable added while another goes is seen), the values of
    the secret-named ones, or the registered values. Per log line this costs a tuple of
    the environment's keys and a few dict look-ups."""

    def __init__(self) -> None:
        self.keys: tuple[Any, ...] | None = None
        self.names: tuple[Any, ...] = ()
        self.values: tuple[Any, ...] | None = None
        self.registered: tuple[str, ...] | None = None
        self.masked: list[str] = []

    def get(self) -> list[str]:
        env: Mapping[Any, Any] = getattr(os.environ, "_data", os.environ)
        keys = tuple(env)
        if keys != self.keys:
            wanted = set(SECRET_ENV)
            self.names = tuple(
                k for k in keys if (n := os.fsdecode(k)) in wanted or SECRET_NAME.search(n)
            )
            self.keys = keys
        values = tuple(map(env.get, self.names))
        if values != self.values or _registered is not self.registered:
            found = {os.fsdecode(v) for v in values if v}
            found = {v for v in found if len(v) >= MIN_SECRET_CHARS} | set(_registered)
            forms = set().union(*map(secret_forms, found)) if found else set()
            # longest first: a secret that contains another is masked whole
            self.masked = sorted(forms, key=len, reverse=True)
            self.values, self.registered = values, _registered
        return self.masked


_secrets = _Secrets()


def _secret_values() -> list[str]:
    return _secrets.get()


def _mask_key_details(text: str) -> str:
    """Mask the values of `Key (columns)=(values) already exists` (or `is not present`):
    from the first `Key (...)=(` on the anchor's line after the previous anchor."""
    out: list[str] = []
    pos = scan = 0  # copied up to `pos`; looked at up to `scan` (each part once)
    for end in _KEY_END.finditer(text):
        line = max(scan, text.rfind("\n", scan, end.start()) + 1)
        start = _KEY_START.search(text, line, end.start())
        if start is not None:
            out.append(text[pos : start.end()])
            out.append(MASK)
            pos = end.start()
        scan = end.end()
    out.append(text[pos:])
    return "".join(out)


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
    lower = text.lower()
    if "bearer" in lower:
        text = _BEARER.sub("Bearer " + MASK, text)
    if any(hint in lower for hint in _KEY_PAIR_HINTS):
        text = _KEY_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    if "Failing row" in text:
        text = _ROW_DETAIL.sub(lambda m: m.group(1) + MASK, text)
    if "Key (" in text and (") already exists" in text or ") is not present" in text):
        text = _mask_key_details(text)
    return text


class RedactFilter(logging.Filter):
    """Mask secrets in the rendered message and the traceback of every record.

    By default the message is rendered and its arguments dropped. With `keep_args` (for
    a formatter that reads `record.args`, such as uvicorn's access log's) each string
    argument is masked in place instead, and the message is rendered only when a secret
    still shows in it (one split over arguments, or inside an object's str())."""

    def __init__(self, *, keep_args: bool = False) -> None:
        super().__init__()
        self.keep_args = keep_args

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _secret_values()
        if self.keep_args and record.args:
            _redact_args(record, secrets)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logged as it is
            message = str(record.msg)
        clean = redact(message, secrets)
        if clean != message or (record.args and not self.keep_args):
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True


def _redact_args(record: logging.LogRecord, secrets: list[str]) -> None:
    """Mask the string arguments of `record` one by one (not the format string, where
    `api_key=%s` would lose its `%s`: a secret there shows in the rendered message)."""
    args = record.args
    if isinstance(args, tuple):
        record.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in args)
    elif isinstance(args, Mapping):
        record.args = {k: redact(v, secrets) if isinstance(v, str) else v for k, v in args.items()}


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


def redact_handlers(*loggers: str) -> None:
    """Give the handlers of these loggers (uvicorn's, which it sets up itself when it
    runs the app) the redaction filter, keeping their formatters and their records'
    arguments (once)."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactFilter) for f in handler.filters):
                handler.addFilter(RedactFilter(keep_args=True))


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
