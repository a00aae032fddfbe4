"""A real OpenAI- and Anthropic-compatible HTTP server that answers without a model.

Used by the tests, the demo and the benchmarks: it answers `reply to: <last user
message>` after a configurable latency, and can be told to fail (500, 429 with
Retry-After, hangs, invalid JSON) at random rates or in a scripted order, so that the
retry and timeout paths are exercised over real sockets.

Run it with `python -m agentq.testing.fake_llm --port 8099` (or `agentq fake-llm`); from a test,
use `FakeLLMServer`, which runs it in a subprocess on a free port.

It also behaves like today's APIs when told to (`reject_max_tokens_for`,
`reject_trailing_assistant`) and can be scripted to answer as they do at their edges:
cut and refused replies, 408/409/429 with their retry headers, hostile model names and
token counts (the script words are listed in `agentq.testing.fake_llm_app`).

Control endpoints (not part of any provider API):
    POST /_control      JSON with any `FakeLLMConfig` field, and/or `script`: what to
                        answer the next requests with, in order, before the knobs apply
                        (statuses such as 429 or 500, "hold:5", or a script word)
    GET  /_stats        {requests, completed, client_disconnects, in_flight,
                        peak_in_flight, by_status, last_request_at, last_body, arrivals,
                        disconnects_at, script_remaining, config}; a request whose client
                        closed the connection before its answer was complete counts in
                        client_disconnects and by_status["499"], not in completed
    POST /_stats/reset  zero the statistics
    POST /_reset        statistics, script and knobs back to how the server started
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import httpx

from agentq.testing.fake_llm_app import create_app
from agentq.testing.fake_llm_config import _FIELD_TYPES, FakeLLMConfig, _coerce_knobs

__all__ = ["FakeLLMConfig", "FakeLLMServer", "create_app", "main", "run"]


def _raise_fd_limit() -> None:
    # Thousands of concurrent connections need thousands of file descriptors.
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def run(host: str, port: int, config: FakeLLMConfig, *, access_log: bool = False) -> None:
    """Serve the fake LLM on host:port until interrupted (blocking)."""
    import uvicorn

    _raise_fd_limit()
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        access_log=access_log,  # one line per request drowns everything else under load
        log_level="warning",
        limit_concurrency=100_000,
        backlog=4096,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,  # hung requests must not delay a stop
    )


# -- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agentq.testing.fake_llm",
        description="Serve a fake OpenAI/Anthropic-compatible LLM (reply to: <message>).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--access-log", action="store_true", help="log every request")
    for f in fields(FakeLLMConfig):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=_FIELD_TYPES[f.name],
            default=f.default,
            help=f"{f.metadata.get('help', '')} (default: {f.default})",
        )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        knobs = _coerce_knobs({f.name: getattr(args, f.name) for f in fields(FakeLLMConfig)})
    except ValueError as exc:
        _parser().error(str(exc))
    print(f"fake LLM on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    run(args.host, args.port, FakeLLMConfig(**knobs), access_log=args.access_log)


# -- a server in a subprocess, for tests ----------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


class FakeLLMServer:
    """The fake LLM in a subprocess on a free port, for tests and benchmarks.

        with FakeLLMServer(latency=0.01) as llm:
            llm.control(script=[429, 200])
            ... LLMSettings(endpoint=llm.url) ...
            assert llm.stats()["requests"] == 2

    A subprocess, not a thread, so that it never competes for the test's GIL and so that
    thousands of held connections cost the test process nothing.
    """

    def __init__(
        self,
        config: FakeLLMConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 30.0,
        **knobs: Any,
    ) -> None:
        self.config = replace(config or FakeLLMConfig(), **_coerce_knobs(knobs))
        self.host = host
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._http: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        """`http://host:port`, where the control endpoints live."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The provider endpoint, e.g. `http://127.0.0.1:PORT/v1`."""
        return self.base_url + "/v1"

    def _args(self) -> list[str]:
        args = [sys.executable, "-m", "agentq.testing.fake_llm", "--host", self.host]
        args += ["--port", str(self.port)]
        for f in fields(FakeLLMConfig):
            value = getattr(self.config, f.name)
            if value is not None and value != f.default:
                args += ["--" + f.name.replace("_", "-"), str(value)]
        return args

    def start(self) -> FakeLLMServer:
        """Start the subprocess and wait until /healthz answers; returns self."""
        if self._proc is not None:
            return self
        fixed_port = bool(self.port)
        for _ in range(3 if not fixed_port else 1):
            if not fixed_port:
                self.port = _free_port(self.host)
            if self._spawn():
                return self
        raise RuntimeError(f"fake LLM did not start on {self.base_url}: {self._log_tail()}")

    def _spawn(self) -> bool:
        env = dict(os.environ)
        # Importable even when agentq is not installed, only checked out.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        # Kept open for the server's lifetime (closed in stop()), hence no `with`.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        proc = subprocess.Popen(
            self._args(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        # Never leave an orphan server behind, even if the test forgets stop().
        weakref.finalize(self, _kill, proc)
        self._http = httpx.Client(base_url=self.base_url, timeout=10.0)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break  # died, e.g. the port was taken between _free_port and bind
            try:
                if self._http.get("/healthz", timeout=1.0).status_code == 200:
                    self._proc = proc
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        _kill(proc)
        self._http.close()
        self._http = None
        return False

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def _client(self) -> httpx.Client:
        if self._http is None:
            raise RuntimeError("the fake LLM is not running; call start() first")
        return self._http

    def control(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs (any `FakeLLMConfig` field) and/or set `script=[...]`; returns the
        server's config and remaining script."""
        response = self._client().post("/_control", json=knobs)
        if response.status_code != 200:
            raise ValueError(response.json().get("error", response.text))
        return dict(response.json())

    def stats(self) -> dict[str, Any]:
        """The server's statistics (see the module docstring)."""
        return dict(self._client().get("/_stats").raise_for_status().json())

    def reset_stats(self) -> None:
        """Zero the statistics only."""
        self._client().post("/_stats/reset").raise_for_status()

    def reset(self) -> None:
        """Statistics, script and knobs back to how the server was started."""
        self._client().post("/_reset").raise_for_status()

    def stop(self) -> None:
        """Stop the subprocess (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if self._http is not None:
            self._http.close()
            self._http = None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                _kill(proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
