"""What one process keeps from job to job of a multirun or sweep, in one place.

Three things are worth keeping between the jobs of a process: decoded images (decoding 60,000
JPEGs costs seconds), the splits already on the device, and the compiled model (compiling costs
tens of seconds, more than a speedrun trial). Each lives in a named `ProcessCache` with a small
bound, so a long sweep over data or model settings never holds more than a few entries. They
live as long as the process; `reset_all()` empties them (tests do, between cases that must not
share state). Nothing here is saved: a new process starts empty.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

V = TypeVar("V")


class ProcessCache(Generic[V]):
    """A map of at most `capacity` entries; adding one more drops the oldest."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name, self.capacity = name, capacity
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        _ALL.append(self)

    def get(self, key: Hashable) -> V | None:
        return self._entries.get(key)

    def put(self, key: Hashable, value: V) -> V:
        self._entries[key] = value
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return value

    def reset(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ProcessCache({self.name!r}, {len(self)}/{self.capacity})"


_ALL: list[ProcessCache] = []


def reset_all() -> None:
    """Empty every cache of this process (decoded images, resident splits, compiled model)."""
    for cache in _ALL:
        cache.reset()
