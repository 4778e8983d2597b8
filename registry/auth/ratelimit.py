"""Slowing down password guessing: failed logins counted per account and client address.

After a few free failures, each further failure locks that (account, address) pair out for a
doubling time; while locked out, attempts are answered 429 without checking the password (or
the lock would only slow guessing, not stop it). Keying by the pair means an attacker guessing
one account's password from one address locks neither the account's owner elsewhere nor other
accounts. A success clears the pair. The table is bounded: the oldest entries go first.

Counts live in one process; with several workers each keeps its own, which multiplies the
allowance by the number of workers but keeps the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


class LoginLimiter:
    def __init__(self, free_attempts: int = 5, base_delay: float = 1.0, max_delay: float = 300.0,
                 forget_after: float = 900.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_entries = max_entries
        self.clock = clock
        self._table: dict[tuple[str, str], _Failures] = {}

    def retry_after(self, account: str, address: str) -> float:
        """Seconds until `account` may try again from `address`; 0 when it may now."""
        entry = self._table.get((account, address))
        if entry is None:
            return 0.0
        now = self.clock()
        if now - entry.last > self.forget_after:
            del self._table[(account, address)]
            return 0.0
        return max(0.0, entry.locked_until - now)

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        key = (account, address)
        entry = self._table.pop(key, None)
        if entry is None or now - entry.last > self.forget_after:
            entry = _Failures(0, now, 0.0)
        entry.count += 1
        entry.last = now
        excess = entry.count - self.free_attempts
        if excess > 0:
            entry.locked_until = now + min(self.max_delay, self.base_delay * 2 ** min(excess - 1, 30))
        while len(self._table) >= self.max_entries:
            del self._table[next(iter(self._table))]
        self._table[key] = entry  # re-inserted last: eviction takes the least recently failing

    def succeeded(self, account: str, address: str) -> None:
        self._table.pop((account, address), None)
