"""`agentq bench --plot FILE.png --from RESULT.json`: redraws a saved result, runs nothing.
The results here are hand-made in the shape `agentq bench --json` prints."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def agentq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentq.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )


def split(scale: float) -> dict[str, Any]:
    def pct(p50: float) -> dict[str, float]:
        return {"n": 40, "p50": p50 * scale, "p95": p50 * scale * 3, "p99": p50 * scale * 5}

    return {
        "e2e": pct(200),
        "debounce": pct(110),
        "queue": pct(5),
        "llm": pct(50),
        "completion": pct(12),
        "overhead": pct(20),
        "fire_error": pct(8),
        "api_post_ms": pct(4),
    }


def result(rates: list[float], baselines: bool = True) -> dict[str, Any]:
    runs = [
        {"rate": r, "messages": int(r * 3), "offered_rate": r, "turns": int(r * 2), **split(r / 10)}
        for r in rates
    ]
    out: dict[str, Any] = {
        "config": {"pool": "threads", "concurrency": 50, "workers": 1, "latency": 0.05},
        "agentq": {
            "latency": runs[0],
            "latency_by_rate": runs,
            "throughput": {"messages": 60, "turns": 60, "turns_per_s": 38.2},
        },
        "baseline": {"noop_tasks_per_s": 728.0, "pipeline_messages_per_s": 43.0},
        "ratios": {"turns_vs_pipeline": 0.888, "turns_vs_noop": 0.052, "pipeline_vs_noop": 0.059},
    }
    if not baselines:
        out["baseline"], out["ratios"] = {"skipped": "no checkout"}, {}
        del out["agentq"]["latency_by_rate"]  # an output from before --rates
    return out


def png_size(path: Path) -> tuple[int, int]:
    try:
        from PIL import Image
    except ImportError:
        data = path.read_bytes()
        assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_plot_redraws_a_saved_result_into_a_png(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(result([10, 20, 40])))
    png = tmp_path / "out" / "bench.png"
    out = agentq("bench", "--plot", str(png), "--from", str(saved))
    assert out.returncode == 0, out.stderr
    assert f"plot written to {png}" in out.stderr
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    width, height = png_size(png)
    print(f"plot {width}x{height} px, {png.stat().st_size} bytes")
    assert width >= 800 and height >= 300


def test_plot_of_one_rate_without_baselines(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(result([20], baselines=False)))
    png = tmp_path / "one.png"
    out = agentq("bench", "--plot", str(png), "--from", str(saved))
    assert out.returncode == 0, out.stderr
    assert png_size(png)[0] >= 800


def test_bad_input_names_the_option(tmp_path: Path) -> None:
    saved = tmp_path / "other.json"
    saved.write_text(json.dumps({"agentq": {"throughput": {}}}))
    png = tmp_path / "never.png"
    bad = agentq("bench", "--plot", str(png), "--from", str(saved))
    assert bad.returncode == 2 and "--from" in bad.stderr and "agentq.latency" in bad.stderr
    alone = agentq("bench", "--from", str(saved))
    assert alone.returncode == 2 and "--plot" in alone.stderr
    rates = agentq("bench", "--rates", "10,fast")
    assert rates.returncode == 2 and "--rates" in rates.stderr
    assert not png.exists()


def test_without_matplotlib_plot_names_the_extra(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(result([10])))
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # import matplotlib -> ImportError
        "from agentq.cli import app\n"
        f"app(['bench', '--plot', {str(tmp_path / 'x.png')!r}, '--from', {str(saved)!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "agentq-queue[plot]" in out.stderr
