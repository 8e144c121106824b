"""Rate limits as sliding windows over timestamps; pure, the clock is passed in."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class LimitKind(StrEnum):
    CLIENT_IP = "ip"
    LOGIN = "login"
    DESTINATION = "destination"


@dataclass(frozen=True, kw_only=True)
class Window:
    """At most ``max_events`` in any ``window_s`` seconds (``max_events=1``: a cool-down)."""

    max_events: int
    window_s: float


@dataclass(frozen=True, kw_only=True)
class Policy:
    login_cooldown: Window = Window(max_events=1, window_s=60)
    per_destination: Window = Window(max_events=5, window_s=600)
    per_ip: Window = Window(max_events=30, window_s=300)
    # against SMS pumping: codes per account a day, SMS over all accounts an hour, and the
    # mobile prefixes an SMS may go to (fixed windows counted atomically in the database)
    account_daily: Window = Window(max_events=10, window_s=86400)
    sms_hourly: Window = Window(max_events=10000, window_s=3600)
    sms_prefixes: tuple[str, ...] = ("+79",)
    # logins: per client address (no hashing beyond it), and the lock-outs. One login costs two
    # argon2id verifications; ``python -m benchmarks.login`` measured 5.2-6.3 logins/s of argon2id
    # capacity on the 2-core development machine (shared, under load). 30 a minute (0.5/s) keeps
    # one address under a tenth of that, and is far above what one person types.
    login_ip: Window = Window(max_events=30, window_s=60)
    lockout_failures: int = 5  # per login and client address
    global_lockout_failures: int = 100  # per login, from any address
    lockout_s: float = 900

    def sms_allowed(self, mobile: str) -> bool:
        return any(mobile.startswith(prefix) for prefix in self.sms_prefixes)

    def window(self, kind: LimitKind) -> Window:
        return {
            LimitKind.CLIENT_IP: self.per_ip,
            LimitKind.LOGIN: self.login_cooldown,
            LimitKind.DESTINATION: self.per_destination,
        }[kind]

    @property
    def longest_s(self) -> float:
        return max(self.login_cooldown.window_s, self.per_destination.window_s,
                   self.per_ip.window_s)


Subject = tuple[LimitKind, str]


# take(subject, window, now): count one event in a fixed window, atomically where every worker
# sees it; ``None`` if it fits, else the seconds until the window lets one more in
Take = Callable[[str, Window, float], int | None]


# loader(kind, subject, since, newest): at most the ``newest`` latest event times after ``since``
Loader = Callable[[LimitKind, str, float, int], list[float]]


@dataclass
class LimitBook:
    """Recent events per subject, loaded on first use and updated in memory as a batch is
    decided; ``added`` is what the batch must store. A sliding window needs only the newest
    ``max_events`` events inside it, so that is all that is loaded: a flood from one client
    costs the same per request as a single request."""

    policy: Policy
    loader: Loader
    history: dict[Subject, list[float]] = field(default_factory=dict)
    added: list[tuple[LimitKind, str, float]] = field(default_factory=list)

    def _events(self, kind: LimitKind, subject: str, now: float) -> list[float]:
        key = (kind, subject)
        if key not in self.history:
            window = self.policy.window(kind)
            self.history[key] = list(self.loader(kind, subject, now - window.window_s, window.max_events))
        return self.history[key]

    def retry_after(self, kind: LimitKind, subject: str, now: float) -> int | None:
        """Seconds until one more event is allowed, or ``None`` if it is allowed now."""
        window = self.policy.window(kind)
        if window.window_s <= 0:
            return None
        events = self._events(kind, subject, now)
        recent = sorted(t for t in events if t > now - window.window_s)
        if len(recent) < window.max_events:
            return None
        frees_at = recent[len(recent) - window.max_events] + window.window_s
        return max(1, math.ceil(frees_at - now))

    def record(self, kind: LimitKind, subject: str, now: float) -> None:
        self._events(kind, subject, now).append(now)
        self.added.append((kind, subject, now))
