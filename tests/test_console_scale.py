"""A smoke run of ops/scripts/console_scale.py at a tiny size, on the suite's PostgreSQL
server: it seeds, loads the long conversation's timeline and pages through the whole
list, and its figures parse. Its timings are figures to read, not assertions."""

from __future__ import annotations

from tests.test_scripts import script


def test_console_scale_pages_through_every_conversation() -> None:
    _, out = script(
        "console_scale.py", "--conversations", "120", "--messages", "40", "--jobs", "12",
        "--repeat", "2", "--json",
    )  # fmt: skip
    assert out["timeline"]["messages_shown"] == 40
    assert out["timeline"]["jobs_shown"] == 12
    assert out["list"]["conversations"] == 121  # the long one too
    assert out["list"]["pages"] == 3
    assert out["list"]["p50_ms"] > 0
