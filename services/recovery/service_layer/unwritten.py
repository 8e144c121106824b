"""What a decided code-request batch carries until it is written: its request ids and rate events.

The consumer loop keeps decided batches in line (``services.common.consumer_loop.InOrder``) and
gives a batch being decided what the batches ahead of it carry; a later batch must count them:
their request ids (not decided twice) and their rate events (limits see them).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from services.recovery.service_layer.ports import RateEvent


@dataclass(frozen=True, kw_only=True)
class Unwritten:
    """One decided batch, as later batches count it until it is written."""

    event_ids: frozenset[str]
    rate_events: tuple[RateEvent, ...]


def in_flight(ahead: Sequence[Unwritten]) -> set[str]:
    """Request ids decided by ``ahead``."""
    return {e for batch in ahead for e in batch.event_ids}


def unwritten_rate_events(ahead: Sequence[Unwritten],
                          written: Callable[[Collection[str]], set[str]]) -> list[RateEvent]:
    """Rate events of ``ahead`` that are not stored yet. ``written`` tells which request ids are
    stored; it is asked in the same transaction as the rate history is read, so a batch written
    meanwhile is counted once, from the table (one id per batch tells)."""
    live = {min(b.event_ids): b for b in ahead if b.rate_events and b.event_ids}
    stored = written(list(live)) if live else set()
    return [e for key, b in live.items() if key not in stored for e in b.rate_events]
