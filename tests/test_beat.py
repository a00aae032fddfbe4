"""`agentq beat`, the one route that runs the reconciler: it stamps a heartbeat file after
every pass, and the image's healthcheck (the compose and Kubernetes probes) reads its age.
Run as a process of its own against SQLite and an embedded Redis."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agentq.runtime.embedded import EmbeddedRedis
from agentq.store.migrate import upgrade
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
INTERVAL = 0.3


def healthcheck() -> ModuleType:
    """ops/docker/healthcheck.py (the image's HEALTHCHECK; not a package module)."""
    spec = importlib.util.spec_from_file_location(
        "healthcheck", ROOT / "ops" / "docker" / "healthcheck.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stamp(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def test_beat_stamps_a_heartbeat_after_every_pass_and_the_probe_reads_its_age(
    tmp_path: Path, module_redis: EmbeddedRedis
) -> None:
    url = f"sqlite:///{tmp_path / 'beat.db'}"
    upgrade(url)
    beat_file = tmp_path / "beat.heartbeat"
    env = {**os.environ, "AGENTQ_DATABASE_URL": url, "AGENTQ_REDIS_URL": module_redis.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentq.cli", "beat", "--interval", str(INTERVAL)]
        + ["--heartbeat-file", str(beat_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    check = healthcheck()
    probe = ["beat", "--heartbeat-file", str(beat_file)]
    try:
        first = wait_until(lambda: stamp(beat_file), what="the first heartbeat")
        assert first["pass"] == "ok" and first["interval"] == INTERVAL
        # refreshed: a later pass stamps it again
        second = wait_until(
            lambda: (s := stamp(beat_file)) and s["at"] > first["at"] and s,
            what="a second heartbeat",
        )
        assert second["pass"] == "ok"
        assert check.healthy(probe)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "reconcile pass failed" not in err.decode(), err.decode()[-2000:]

    # the loop stopped: once the stamp is older than three intervals the probe fails
    old = time.time() - 3 * INTERVAL - 1
    os.utime(beat_file, (old, old))
    assert not check.healthy(probe)
    beat_file.unlink()
    assert not check.healthy(probe)  # no pass finished yet


def test_probe_finds_the_heartbeat_file_named_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beat_file = tmp_path / "from-env.heartbeat"
    monkeypatch.setenv("AGENTQ_BEAT_HEARTBEAT_FILE", str(beat_file))
    check = healthcheck()
    assert not check.healthy(["beat"])
    beat_file.write_text(json.dumps({"at": time.time(), "interval": 5.0, "pass": "ok"}))
    assert check.healthy(["beat"])
    beat_file.write_text("not a heartbeat")
    assert not check.healthy(["beat"])
