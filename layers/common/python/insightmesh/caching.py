"""A small per-container cache with a time to live, for values read on the request path.

Lambda reuses a container for many invocations: a value read from DynamoDB a few seconds ago is
usually still right, and reading it again costs a round trip on every request. ``TtlCache`` keeps
values for ``ttl_seconds`` (monotonic clock) and at most ``max_entries`` of them (the oldest go
first); it is thread-safe, since the local runtime and tool loops use threads. A failed load is
never cached.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_seconds: float, *, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_seconds < 0 or max_entries < 1:
            raise ValueError("ttl_seconds must be >= 0 and max_entries >= 1")
        self.ttl_seconds, self.max_entries, self._clock = ttl_seconds, max_entries, clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The cached value of ``key`` if it is younger than the TTL, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() - entry[0] >= self.ttl_seconds:
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, or ``load()``'s (cached; an exception from ``load`` is not)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._clock() - entry[0] < self.ttl_seconds:
                return entry[1]
        return self.put(key, load())

    def invalidate(self, key: K | None = None) -> None:
        """Forget ``key`` (everything when None): after a write this container made itself."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
