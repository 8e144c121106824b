from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.notifier.domain.model import RetryPolicy

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(initial_s=1, max_s=8)
    for attempts, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (12, 8)]:
        delays = {policy.delay(attempts) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_retry_after_is_honoured() -> None:
    policy = RetryPolicy(initial_s=1, max_s=8)
    assert policy.delay(1, retry_after_s=30) == 30


def test_no_retry_past_expiry_and_a_last_try_before_it() -> None:
    policy = RetryPolicy(initial_s=1, max_s=8)
    soon = NOW + timedelta(seconds=0.4)
    assert policy.next_attempt(attempts=1, now=NOW, expires_at=soon, retry_after_s=None) is None
    later = NOW + timedelta(hours=1)
    when = policy.next_attempt(attempts=1, now=NOW, expires_at=later, retry_after_s=None)
    assert when is not None and NOW < when <= NOW + timedelta(seconds=1)
    # a delay past the expiry becomes one last try a second before it
    assert policy.next_attempt(attempts=1, now=NOW, expires_at=later, retry_after_s=7200) == (
        later - timedelta(seconds=1))


def test_retries_continue_whatever_the_attempt_count() -> None:
    policy = RetryPolicy(initial_s=1, max_s=60)
    later = NOW + timedelta(hours=1)
    for attempts in (20, 21, 100, 10_000):
        when = policy.next_attempt(attempts=attempts, now=NOW, expires_at=later, retry_after_s=None)
        assert when is not None and NOW + timedelta(seconds=30) <= when <= NOW + timedelta(seconds=60)
