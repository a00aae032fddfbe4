"""The pure decisions of a turn, without any service: due times, loop bounds, who answers,
retry backoff, and what a provider's answer becomes before it is stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from agentq.providers import ChatResult
from agentq.states import ConversationSettings, DoubleTexting, JobStatus, Responders
from agentq.turn import call, debounce, finish
from agentq.turn.dispatch import loop_bound
from agentq.turn.responders import select_responders

T0 = datetime(2030, 1, 1, tzinfo=UTC)


# -- debounce ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [(0, 0, 2), (0, 3, 5), (0, 7.9, 9.9), (0, 9, 10), (0, 30, 10)],
)
def test_due_is_debounce_after_the_last_message_capped_by_max_wait(
    first: float, last: float, expected: float
) -> None:
    settings = {"debounce_seconds": 2, "max_wait_seconds": 10}
    due = debounce.due(settings, T0 + timedelta(seconds=first), T0 + timedelta(seconds=last))
    assert due == T0 + timedelta(seconds=expected)


def test_max_wait_below_the_debounce_counts_as_the_debounce() -> None:
    assert debounce.window({"debounce_seconds": 5, "max_wait_seconds": 1}) == (5.0, 5.0)


def test_unset_window_takes_the_deployment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTQ_DEBOUNCE_SECONDS", "0.7")
    monkeypatch.setenv("AGENTQ_MAX_WAIT_SECONDS", "4")
    from agentq.config import reset_settings

    reset_settings()
    try:
        assert debounce.window(None) == (0.7, 4.0)
    finally:
        monkeypatch.delenv("AGENTQ_DEBOUNCE_SECONDS")
        monkeypatch.delenv("AGENTQ_MAX_WAIT_SECONDS")
        reset_settings()


# -- conversation settings -----------------------------------------------------------------


def test_stored_settings_read_as_typed_members() -> None:
    s = ConversationSettings.of({"double_texting": "rollback", "responders": "all"})
    assert s.double_texting is DoubleTexting.ROLLBACK and s.responders is Responders.ALL
    assert ConversationSettings.of(None).double_texting is DoubleTexting.ENQUEUE


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValidationError):
        ConversationSettings.of({"debounce": 1})


def test_states_compare_equal_to_the_strings_stored_before_them() -> None:
    assert JobStatus.ACTIVE == "active" and f"{JobStatus.DELAYED}" == "delayed"


# -- loop bound ----------------------------------------------------------------------------


def test_agents_may_answer_each_other_below_the_hop_limit() -> None:
    assert loop_bound(hops=2, turns=2, hop_limit=3, budget=0) is None


def test_hop_limit_stops_agents() -> None:
    assert "hop limit 3" in (loop_bound(hops=3, turns=3, hop_limit=3, budget=0) or "")


def test_turn_budget_stops_agents_even_after_a_human_spoke() -> None:
    assert "budget of 5" in (loop_bound(hops=0, turns=5, hop_limit=3, budget=5) or "")


def test_no_budget_means_none() -> None:
    assert loop_bound(hops=0, turns=10_000, hop_limit=3, budget=0) is None


# -- responders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    kind: str
    settings: dict[str, object] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True)
class Agent:
    name: str
    role: str = ""
    goal: str = ""
    backstory: str = ""
    status: str = "active"
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    participant_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True)
class Msg:
    content: str
    role: str = "user"
    author_id: uuid.UUID | None = None
    seq: int = 1
    id: uuid.UUID = field(default_factory=uuid.uuid4)


CHEF = Agent("Chef", role="cook", goal="recipes for dinner and baking")
CASH = Agent("Cash", role="accountant", goal="taxes budgets invoices")


def test_dm_agent_answers_whatever_is_said() -> None:
    assert select_responders(Conv("dm"), [CASH], [Msg("bake me a cake")]) == [CASH]


def test_mention_wins_over_relevance_and_is_case_insensitive() -> None:
    chosen = select_responders(Conv("channel"), [CHEF, CASH], [Msg("@cash what about cake?")])
    assert chosen == [CASH]


def test_most_relevant_agent_answers_without_a_mention() -> None:
    chosen = select_responders(Conv("channel"), [CHEF, CASH], [Msg("recipes for dinner?")])
    assert chosen == [CHEF]


def test_responders_all_lets_every_agent_answer() -> None:
    conv = Conv("channel", {"responders": "all"})
    assert select_responders(conv, [CHEF, CASH], [Msg("hello")]) == [CHEF, CASH]


def test_stopped_agents_never_answer() -> None:
    stopped = Agent("Gone", status="inactive")
    assert select_responders(Conv("dm"), [stopped], [Msg("hello")]) == []


def test_an_agents_message_is_answered_only_in_autonomous_channels() -> None:
    said = Msg("taxes?", role="assistant", author_id=CHEF.participant_id)
    assert select_responders(Conv("channel"), [CHEF, CASH], [said]) == []
    autonomous = Conv("channel", {"autonomous": True})
    assert select_responders(autonomous, [CHEF, CASH], [said]) == [CASH]


# -- retries -------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTQ_RETRY_BACKOFF_SECONDS", "1")
    monkeypatch.setenv("AGENTQ_RETRY_BACKOFF_MAX_SECONDS", "8")
    from agentq.config import reset_settings

    reset_settings()
    try:
        for attempt, cap in ((1, 1), (2, 2), (3, 4), (4, 8), (9, 8)):
            waits = [finish.backoff(attempt) for _ in range(200)]
            assert all(cap / 2 <= w <= cap for w in waits)
            assert max(waits) - min(waits) > cap / 10  # jittered, not fixed
    finally:
        monkeypatch.delenv("AGENTQ_RETRY_BACKOFF_SECONDS")
        monkeypatch.delenv("AGENTQ_RETRY_BACKOFF_MAX_SECONDS")
        reset_settings()


# -- what a provider's answer becomes ------------------------------------------------------


def test_answer_is_cut_and_cleaned_before_it_is_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTQ_MAX_REPLY_LENGTH", "5")
    from agentq.config import reset_settings

    reset_settings()
    try:
        kept = call.answer(uuid.uuid4(), ChatResult(content="a\x00b\ud800cdefgh", model="m"))
    finally:
        monkeypatch.delenv("AGENTQ_MAX_REPLY_LENGTH")
        reset_settings()
    assert kept["content"] == "ab?c" and kept["truncated"] is True


def test_failure_reason_is_short() -> None:
    assert len(call.short_reason(RuntimeError("x" * 10_000))) == call.REASON_MAX
    assert call.short_reason(RuntimeError()) == "RuntimeError"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_conversation_settings_are_refused_naming_the_field(value: float) -> None:
    from agentq.errors import InvalidInput
    from agentq.ops.conversations import _check_settings

    with pytest.raises(InvalidInput, match="settings.debounce_seconds"):
        _check_settings({"debounce_seconds": value})
