#!/usr/bin/env python
"""Draw agentq's architecture as SVG: the README's picture, from this file.

Regenerate after changing NODES or EDGES below:

    python ops/architecture.py            # writes ops/architecture.svg

Standard library only (no Graphviz needed): each box has a fixed place on a grid, each
arrow runs between box edges, so the picture is the same on every machine and its diff
is readable.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

OUT = Path(__file__).with_suffix(".svg")
WIDTH, HEIGHT = 1110, 590

#: fill colours by kind of box
COLOURS = {
    "client": "#e8f1fb",
    "agentq": "#fff4e0",
    "store": "#e9f7ec",
    "external": "#f3eefb",
    "ops": "#f1f1f1",
}


@dataclass(frozen=True)
class Node:
    key: str
    x: int
    y: int
    w: int
    h: int
    kind: str
    title: str
    lines: tuple[str, ...] = ()

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    def border(self, tx: float, ty: float) -> tuple[float, float]:
        """Where the line from the centre towards (tx, ty) leaves the box."""
        dx, dy = tx - self.cx, ty - self.cy
        if dx == 0 and dy == 0:
            return self.cx, self.cy
        sx = (self.w / 2) / abs(dx) if dx else float("inf")
        sy = (self.h / 2) / abs(dy) if dy else float("inf")
        s = min(sx, sy)
        return self.cx + dx * s, self.cy + dy * s


NODES = [
    Node(
        "client",
        30,
        40,
        220,
        78,
        "client",
        "Your code",
        ("agentq.Client(): post, ask,", "stream, wait_for_reply"),
    ),
    Node(
        "http", 30, 200, 220, 78, "client", "HTTP clients", ("REST + SSE, an API key", "per tenant")
    ),
    Node(
        "beat",
        30,
        360,
        220,
        78,
        "agentq",
        "agentq beat",
        ("the reconciler: re-drives", "unfinished work from the DB"),
    ),
    Node(
        "pg",
        330,
        40,
        220,
        110,
        "store",
        "PostgreSQL (or SQLite)",
        ("the truth: conversations,", "messages, jobs, events,", "debounce windows"),
    ),
    Node(
        "api",
        330,
        200,
        220,
        78,
        "agentq",
        "agentq api",
        ("FastAPI; /metrics with", "the state gauges"),
    ),
    Node(
        "prom",
        330,
        490,
        220,
        78,
        "ops",
        "Prometheus + Grafana",
        ("alerts, the agentq", "dashboard"),
    ),
    Node(
        "redis",
        630,
        40,
        220,
        110,
        "store",
        "Redis",
        ("Celery queues agentq.control", "and agentq.llm; timers,", "slots, pub/sub"),
    ),
    Node(
        "control",
        630,
        200,
        220,
        78,
        "agentq",
        "control workers",
        ("dispatch, advance, complete", "(short, database-bound)"),
    ),
    Node(
        "llm",
        630,
        360,
        220,
        78,
        "agentq",
        "LLM workers",
        ("run_job: threads pool,", "retries, circuit breaker"),
    ),
    Node(
        "keda",
        630,
        490,
        220,
        78,
        "ops",
        "KEDA",
        ("scales the LLM pool on", "running + queued jobs"),
    ),
    Node("flower", 910, 40, 170, 78, "ops", "Flower", ("Celery tasks", "and workers")),
    Node(
        "provider",
        910,
        360,
        170,
        78,
        "external",
        "LLM provider",
        ("OpenAI-compatible,", "over HTTP"),
    ),
]


@dataclass(frozen=True)
class Edge:
    a: str
    b: str
    label: str = ""
    #: bends between the two boxes (the line leaves and enters at the first and last)
    via: tuple[tuple[int, int], ...] = ()
    dashed: bool = False
    #: where the label goes, when the middle of the line is crowded
    at: tuple[int, int] | None = None


EDGES = [
    Edge("client", "pg", "1 transaction"),
    Edge("client", "redis", "enqueue after commit (ids only)", via=((140, 18), (740, 18))),
    Edge("http", "api"),
    Edge("api", "pg"),
    Edge("redis", "control", "tasks"),
    Edge("control", "pg", "claim; reply written once"),
    Edge("redis", "llm", "run_job", via=((880, 120), (880, 380))),
    Edge("llm", "provider", "httpx"),
    Edge("beat", "pg", "read unfinished", via=((290, 399), (290, 125)), at=(290, 330)),
    Edge("prom", "api", "scrape /metrics (workers too)", dashed=True),
    Edge("keda", "prom", "query"),
    Edge("keda", "llm", "scale"),
    Edge("flower", "redis"),
]


def box(node: Node) -> str:
    parts = [
        f'<rect x="{node.x}" y="{node.y}" width="{node.w}" height="{node.h}" rx="10" '
        f'fill="{COLOURS[node.kind]}" stroke="#5b6b7c" stroke-width="1.4"/>',
        f'<text x="{node.cx}" y="{node.y + 24}" class="title">{escape(node.title)}</text>',
    ]
    for i, line in enumerate(node.lines):
        parts.append(f'<text x="{node.cx}" y="{node.y + 44 + 16 * i}">{escape(line)}</text>')
    return "\n".join(parts)


def arrow(edge: Edge, a: Node, b: Node) -> str:
    first = edge.via[0] if edge.via else (b.cx, b.cy)
    last = edge.via[-1] if edge.via else (a.cx, a.cy)
    points = [a.border(*first), *edge.via, b.border(*last)]
    dash = ' stroke-dasharray="6 4"' if edge.dashed else ""
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    out = (
        f'<polyline points="{path}" fill="none" stroke="#36454f" stroke-width="1.4"{dash} '
        'marker-end="url(#head)"/>'
    )
    if edge.label:
        # on the middle segment
        i = (len(points) - 1) // 2
        (x1, y1), (x2, y2) = points[i], points[i + 1]
        mx, my = edge.at or ((x1 + x2) / 2, (y1 + y2) / 2)
        out += (
            f'\n<text x="{mx:.1f}" y="{my - 5:.1f}" class="label" '
            f'paint-order="stroke" stroke="#ffffff" stroke-width="4">{escape(edge.label)}</text>'
        )
    return out


def render() -> str:
    nodes = {n.key: n for n in NODES}
    body = [arrow(e, nodes[e.a], nodes[e.b]) for e in EDGES]
    body += [box(n) for n in NODES]
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif">
<!-- generated by ops/architecture.py; edit that file and run it again -->
<title>agentq architecture</title>
<style>
text {{ font-size: 12px; fill: #1f2933; text-anchor: middle; }}
text.title {{ font-size: 14px; font-weight: bold; }}
text.label {{ font-size: 11px; fill: #36454f; font-style: italic; }}
</style>
<defs><marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#36454f"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
{chr(10).join(body)}
</svg>
"""


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
