"""What later code-request batches count of the decided, unwritten ones: their request ids and
their rate events (once, even if a batch is written meanwhile)."""

from __future__ import annotations

from services.recovery.domain.model import LimitKind
from services.recovery.service_layer.codes import Unwritten, in_flight, unwritten_rate_events

EVENT = (LimitKind.LOGIN, "subject", 1000.0)


def unwritten(ids: set[str], *events: tuple[LimitKind, str, float]) -> Unwritten:
    return Unwritten(event_ids=frozenset(ids), rate_events=events)


def test_later_batches_count_the_ids_and_rate_events_not_written_yet() -> None:
    ahead = [unwritten({"a", "b"}, EVENT), unwritten({"c"})]  # no rate events: nothing to count
    assert in_flight(ahead) == {"a", "b", "c"}
    asked: list[list[str]] = []

    def none_written(ids: object) -> set[str]:
        asked.append(sorted(ids))  # type: ignore[call-overload]
        return set()

    assert unwritten_rate_events(ahead, none_written) == [EVENT]
    assert asked == [["a"]]  # one id per batch tells whether it is written
    assert unwritten_rate_events(ahead, lambda ids: {"a"}) == []  # written meanwhile: once
    assert unwritten_rate_events([], none_written) == [] and len(asked) == 1
