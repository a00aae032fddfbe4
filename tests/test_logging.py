"""Structured logs: JSON with context ids, secrets redacted, no message bodies at INFO."""

from __future__ import annotations

import io
import json
import logging
import secrets
import uuid
from pathlib import Path

import pytest

from agentq import logging as agentq_logging
from agentq.api.settings import api_settings
from agentq.ops import keys
from tests.helpers import jobs_of, make_dm


def capture(json_lines: bool = True) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    agentq_logging.install(handler, json_lines=json_lines)
    logger = logging.getLogger(f"agentq.test.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_json_lines_carry_the_bound_ids() -> None:
    log, out = capture()
    with agentq_logging.bound(conversation_id="c-1", job_id="j-1", agent="helper"):
        log.info("job %s done", "j-1")
    log.info("explicit", extra={"conversation_id": "c-2"})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "job j-1 done" and first["level"] == "INFO"
    assert (first["conversation_id"], first["job_id"], first["agent"]) == ("c-1", "j-1", "helper")
    assert second["conversation_id"] == "c-2" and "job_id" not in second


def test_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_API_KEY", "plain-key-without-prefix-123")
    log, out = capture(json_lines=False)
    log.warning("calling with %s", "sk-live-ABCDEFGHIJKLMNOP")
    log.warning("headers {'Authorization': 'Bearer eyJhbGciOi.abc.def'}")
    log.warning("key in url ?api_key=zzzzzzzzzz&x=1 and plain-key-without-prefix-123")
    try:
        raise ValueError("boom sk-proj-QWERTYUIOPASDF")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    for secret in (
        "sk-live-ABCDEFGHIJKLMNOP",
        "eyJhbGciOi",
        "zzzzzzzzzz",
        "plain-key-without-prefix-123",
        "sk-proj-QWERTYUIOPASDF",
    ):
        assert secret not in text
    assert text.count(agentq_logging.MASK) >= 5


def test_agentq_api_keys_are_redacted_by_their_shape() -> None:
    """A key as `agentq keys create` mints it, in any shape of line; what `agentq keys
    list` shows of one (its first 10 characters) stays readable."""
    minted = [keys.KEY_PREFIX + secrets.token_urlsafe(keys.KEY_BYTES) for _ in range(50)]
    minted.append("aq_-" + "-" * 42)  # urlsafe characters only, at the edges
    log, out = capture()
    for key in minted:
        log.warning("login with %s failed", key)
        log.warning("{'key': '%s'}", key)
        log.warning("token=%s;next", key)
    try:
        raise ValueError(f"bad key {minted[0]}")
    except ValueError:
        log.exception("verify failed")
    text = out.getvalue()
    for key in minted:
        assert key not in text and key[3:] not in text
    assert agentq_logging.redact(f"key {minted[0][:10]} revoked") == (
        f"key {minted[0][:10]} revoked"
    )
    assert agentq_logging.redact("task aq_dispatch ran") == "task aq_dispatch ran"


def test_configured_secrets_are_redacted_wherever_they_come_from(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The console's keys and the metrics token from the environment, any variable named
    like a key (a model profile's `api_key_env`), and settings read from `.env`, which
    the environment does not show; short values and other variables are left alone."""
    given = {
        "AGENTQ_CONSOLE_OPERATOR_KEY": "operator-" + uuid.uuid4().hex,
        "AGENTQ_METRICS_TOKEN": "metrics-" + uuid.uuid4().hex,
        "OPENAI_FAST_KEY": "fast-" + uuid.uuid4().hex,
        "PROVIDER_X_SECRET": "x-" + uuid.uuid4().hex,
    }
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SHORT_KEY", "abc")
    monkeypatch.setenv("AGENTQ_TENANT", "tenant-with-a-long-name")
    from_dotenv = "dotenv-operator-" + uuid.uuid4().hex
    (tmp_path / ".env").write_text(f"AGENTQ_CONSOLE_VIEWER_KEY={from_dotenv}\n")
    monkeypatch.delenv("AGENTQ_CONSOLE_VIEWER_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    api_settings.cache_clear()
    try:
        assert api_settings().console_viewer_key is not None  # read from .env
    finally:
        api_settings.cache_clear()
    log, out = capture(json_lines=False)
    for value in (*given.values(), from_dotenv):
        log.warning("configured: %s.", value)
    log.warning("plain abc and tenant-with-a-long-name")
    text = out.getvalue()
    for value in (*given.values(), from_dotenv):
        assert value not in text
    assert text.count(agentq_logging.MASK) == len(given) + 1
    assert "plain abc and tenant-with-a-long-name" in text


def test_url_passwords_are_redacted_and_the_rest_of_the_url_kept() -> None:
    clean = agentq_logging.redact(
        "flower http://ops:flower-pass-42@127.0.0.1:5555/api and redis://:r3dis-pw@h:6379/0 "
        "and http://127.0.0.1:8000/v1/agents"
    )
    assert "flower-pass-42" not in clean and "r3dis-pw" not in clean
    assert "http://ops:[REDACTED]@127.0.0.1:5555/api" in clean
    assert "redis://:[REDACTED]@h:6379/0" in clean
    assert "http://127.0.0.1:8000/v1/agents" in clean


def test_row_values_postgresql_quotes_are_redacted() -> None:
    log, out = capture()
    try:
        raise RuntimeError(
            '(psycopg.errors.CheckViolation) new row for relation "messages" violates check\n'
            "DETAIL:  Failing row contains (1, my password is hunter2).\n"
            "[SQL: INSERT INTO messages ...]\n[SQL parameters hidden due to hide_parameters=True]"
        )
    except RuntimeError:
        log.exception("insert failed")
    log.warning("DETAIL:  Key (name)=(tenant-secret-name) already exists.")
    text = out.getvalue()
    assert "hunter2" not in text and "tenant-secret-name" not in text
    assert "Failing row contains" in text and "[SQL: INSERT INTO messages" in text
    assert "Key (name)=" in text


def test_format_follows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("AGENTQ_LOG_FORMAT", raising=False)
    assert agentq_logging.use_json(io.StringIO()) is True
    assert agentq_logging.use_json(TTY()) is False
    monkeypatch.setenv("AGENTQ_LOG_FORMAT", "json")
    assert agentq_logging.use_json(TTY()) is True


@pytest.mark.integration
def test_worker_logs_of_a_run_hold_no_key_and_no_content(live) -> None:  # noqa: ANN001
    """The live workers log JSON (their stdout is a file); after a full run, no line holds
    the API key, and no INFO line holds what the user wrote or what the agent answered."""
    content = "my-private-note-31415"
    conv, user, _ = make_dm(live.client)
    reply = live.client.ask(conv.id, user.id, content, timeout=30)
    job = jobs_of(conv.id)[0]

    lines = [
        line
        for path in sorted(live.stack.log_dir.glob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
    ]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, "workers should log JSON lines when not on a terminal"
    text = "\n".join(lines)
    assert live.env["LLM_API_KEY"] not in text
    info = "\n".join(json.dumps(r) for r in records if r["level"] in ("INFO", "DEBUG"))
    assert content not in info
    assert reply.content not in info
    # the job's own lines carry its ids, the agent and the Celery task
    mine = [r for r in records if r.get("job_id") == str(job.id)]
    assert mine
    assert any(r.get("task_id") and r.get("task_name") == "agentq.run_job" for r in mine)
    assert any(r.get("agent") and r.get("conversation_id") == str(conv.id) for r in mine)


def test_tracing_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentq import tracing

    monkeypatch.delenv("AGENTQ_OTEL", raising=False)
    assert tracing.setup_tracing() is False
    # asked for, but without the otel extra installed: a warning, not a crash
    monkeypatch.setenv("AGENTQ_OTEL", "1")
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        assert tracing.setup_tracing() is False


def test_an_llm_key_kept_only_in_dotenv_is_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentq.config import get_settings, reset_settings

    value = "provider-" + secrets.token_hex(12)  # no sk- shape: only its value can mask it
    (tmp_path / ".env").write_text(f"LLM_API_KEY={value}\n")
    monkeypatch.delenv("LLM_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    try:
        assert get_settings().llm.api_key.get_secret_value() == value
        assert value not in agentq_logging.redact(f"calling the provider with {value}")
    finally:
        reset_settings()


def test_key_details_are_masked_from_the_first_key_of_their_line() -> None:
    """`Key (...)=(...)` is masked only up to an `already exists` / `is not present` on
    its line; a `Key (` with no such end, or on another line, is left as it is."""
    text = (
        "DETAIL:  Key (name)=(secret-one) already exists.\n"
        "Key (q)=(no end here\n"
        "DETAIL:  Key (tenant_id, name)=(t1, secret-two) is not present in table."
    )
    clean = agentq_logging.redact(text)
    assert "secret-one" not in clean and "secret-two" not in clean
    assert "Key (name)=([REDACTED]) already exists." in clean
    assert "Key (q)=(no end here\n" in clean
    assert "Key (tenant_id, name)=([REDACTED]) is not present in table." in clean


def test_uvicorns_own_handlers_mask_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as `uvicorn --factory agentq.api:create_app`, uvicorn logs through handlers it
    set up itself (as here, with its formatters): create_app gives them the redaction,
    and the access log, whose formatter reads the record's arguments, still formats."""
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    from agentq.api.app import create_app

    key = "aq_" + secrets.token_urlsafe(32)
    out = io.StringIO()
    default, access = logging.StreamHandler(out), logging.StreamHandler(out)
    default.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))
    access.setFormatter(
        AccessFormatter(
            '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            use_colors=False,
        )
    )
    loggers = {"uvicorn": default, "uvicorn.access": access}
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate) for n in loggers}
    for name, handler in loggers.items():
        monkeypatch.setattr(logging.getLogger(name), "handlers", [handler])
        logging.getLogger(name).propagate = False
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        create_app()
        logging.getLogger("uvicorn.error").error("bad request with %s", key)
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            f"/v1/agents?api_key={key}",
            "1.1",
            200,
        )
    finally:
        for name, (level, propagate) in saved.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate
    text = out.getvalue()
    assert key not in text and key[3:] not in text, text
    assert "bad request with [REDACTED]" in text
    assert '127.0.0.1:5000 - "GET /v1/agents?api_key=[REDACTED] HTTP/1.1" 200' in text
