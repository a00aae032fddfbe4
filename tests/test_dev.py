"""`agentq dev`: the printed curl and Python snippet work as printed, and Ctrl-C (SIGINT)
leaves no process behind."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from agentq.runtime.embedded import free_port


def _clean_env() -> dict[str, str]:
    """The environment of a new user: no agentq or provider settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "LLM_"))}


class Output:
    """The dev command's output, read by a thread as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.text = ""
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, prefix: str, timeout: float = 180) -> str:
        """Everything read until a line starting with `prefix` (or the end)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.text += line
            if line.startswith(prefix):
                return self.text
        raise AssertionError(f"no line starting {prefix!r} in:\n{self.text}")


def _python_snippet(out: str) -> str:
    block = re.search(r"^Python \(.*\):\n((?:  .*\n)+)", out, re.M)
    assert block, out
    return textwrap.dedent(block.group(1))


def _run_curl(line: str, cwd: Path) -> str:
    if shutil.which("curl"):
        done = subprocess.run(
            ["sh", "-c", line], cwd=cwd, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout
    # no curl here: the same request, read from the printed line
    args = shlex.split(line)
    headers = dict(h.split(": ", 1) for h in args[args.index("-H") + 1 :: 2] if ": " in h)
    url = next(a for a in args if a.startswith("http"))
    return httpx.post(url, headers=headers, content=args[args.index("-d") + 1], timeout=60).text


@pytest.mark.integration
@pytest.mark.parametrize(
    ("backend", "stop", "own_env"),
    [("sqlite", signal.SIGINT, False), ("postgres", signal.SIGTERM, False)]
    + [("sqlite", signal.SIGINT, True)],  # a .env of the user's: left alone, exports printed
)
def test_dev_stack_answers_the_printed_curl_and_python_then_stops_clean(
    tmp_path: Path,
    backend: str,
    stop: signal.Signals,
    own_env: bool,
    request: pytest.FixtureRequest,
) -> None:
    mine = "# the user's own settings\nSOMETHING=else\n"
    if own_env:
        (tmp_path / ".env").write_text(mine)
    port = free_port()
    args = [sys.executable, "-m", "agentq.cli", "dev", "--port", str(port)]
    if backend == "postgres":
        args += ["--database-url", request.getfixturevalue("pg_url")]
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = Output(proc)
        out = output.until("ready:")
        assert f"API:      http://127.0.0.1:{port}" in out
        curl = re.search(r"^  (curl .*)$", out, re.M)
        assert curl, out
        reply = json.loads(_run_curl(curl.group(1), tmp_path))
        assert reply["reply"]["content"], reply

        python = f"{shlex.quote(sys.executable)} -c {shlex.quote(_python_snippet(out))}"
        if own_env:  # the printed exports, then the snippet
            assert "needs the exports below" in out
            python = "\n".join([*re.findall(r"^  (export .*)$", out, re.M), python])
        else:
            assert "reads ./.env" in out
        done = subprocess.run(
            ["sh", "-c", python],
            cwd=tmp_path,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), done.stderr

        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 6  # redis, fake LLM, 2 workers, reconciler, API
        proc.send_signal(stop)
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(stop)  # impatient: a second signal must not cut the stopping short
        rest = output.until("stopped:", timeout=60)
        assert proc.wait(60) == 0, rest
        assert "turn answered  Ava" in rest
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
        if own_env:
            assert (tmp_path / ".env").read_text() == mine
        else:
            assert not (tmp_path / ".env").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dev_says_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "agentq.cli", "dev", "--port", str(port)],
            cwd=tmp_path,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 2
    assert f"127.0.0.1:{port} is in use: choose another with --port" in out.stderr
    assert not list(tmp_path.iterdir())  # nothing started, nothing written


def test_dev_names_the_extra_it_needs(tmp_path: Path) -> None:
    run_without_uvicorn = (
        "import sys; sys.modules['uvicorn'] = None; sys.argv = ['agentq', 'dev']; "
        "from agentq.cli import main; main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", run_without_uvicorn],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "uvicorn is not installed" in out.stderr
    assert "pip install 'agentq-queue[embedded]'" in out.stderr
    assert not list(tmp_path.iterdir())
