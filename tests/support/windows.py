"""Sliding windows as their definition reads, for the fakes of both services' window ports.

``rings`` maps a subject to the times its counted events leave their window; an event is let in
while fewer than ``max_events`` of them are still inside."""

from __future__ import annotations

import math


def take(rings: dict[str, list[float]], subject: str, *, max_events: int, window_s: float,
         now: float) -> int | None:
    """None when the event is counted, else the seconds until it would be."""
    if max_events <= 0 or window_s <= 0:
        return None
    inside = sorted(t for t in rings.get(subject, []) if t > now)
    if len(inside) >= max_events:
        return max(1, math.ceil(inside[len(inside) - max_events] - now))
    rings[subject] = [*inside, now + window_s]
    return None


def peek(rings: dict[str, list[float]], subject: str, *, max_events: int, window_s: float,
         now: float) -> int | None:
    """What ``take`` would answer now, counting nothing."""
    return take({subject: list(rings.get(subject, []))}, subject, max_events=max_events,
                window_s=window_s, now=now)


def take_together(rings: dict[str, list[float]],
                  groups: list[list[tuple[str, int, float]]], now: float
                  ) -> list[tuple[int, int] | None]:
    """For each group in order: an event in each of its windows, or (when one is full: its
    position, its wait) in none."""
    answers: list[tuple[int, int] | None] = []
    for group in groups:
        waits = [peek(rings, s, max_events=m, window_s=w, now=now) for s, m, w in group]
        full = [(i, wait) for i, wait in enumerate(waits) if wait is not None]
        if not full:
            for s, m, w in group:
                take(rings, s, max_events=m, window_s=w, now=now)
        answers.append(full[0] if full else None)
    return answers


def prune(rings: dict[str, list[float]], before: float) -> None:
    """Drop the times before ``before``, in place, and the subjects left with none (as the
    tables keep no empty ring)."""
    for subject, leaving in list(rings.items()):
        kept = [t for t in leaving if t >= before]
        if kept:
            rings[subject] = kept
        else:
            del rings[subject]
