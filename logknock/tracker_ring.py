"""The first-step tier: sources that matched only a first step, oldest first.

A spoofed flood fills this tier, so it is built to be cheap: a ring of
`capacity` slots in arrival order (flat arrays: source key, shared `Start`,
time, home bucket) and an open-addressing index from source key to slot
(4 bytes a bucket, at most half full, linear probing with backward-shift
deletion, so no tombstones ever pile up): about 40 bytes per entry, all
allocated up front, plus the key's int (32 bytes for IPv4), the only Python
object per entry. Buckets come from a multiply-add-shift hash with a random
multiplier, so addresses chosen to collide cannot make probing slow.

Writing a slot overwrites the oldest one once the ring has gone round: a
first-step entry lives until `capacity` newer ones were written after it.
"""

from __future__ import annotations

import math
import secrets
from array import array
from collections.abc import Iterator

from .tracker_routes import Start

_W = 192  # hash word: wider than any key (129 bits)
_WORD = (1 << _W) - 1


class FirstStepRing:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.weight = 0  # entries held: a slot counts once per sequence it started
        size = 8
        while size < 2 * capacity:
            size *= 2
        self._mask = size - 1
        self._shift = _W - (size.bit_length() - 1)
        self._mult = secrets.randbits(_W) | 1
        self._add = secrets.randbits(_W)
        self._index = array("i", bytes(4 * size))  # slot + 1; 0 is an empty bucket
        self._keys: list[int | None] = [None] * capacity
        self._starts: list[Start | None] = [None] * capacity
        self._ats = array("d", bytes(8 * capacity))
        self._homes = array("i", bytes(4 * capacity))
        self._hashed = (-1, 0)  # the last key hashed and its bucket: find() then put()
        self._head = 0  # the next slot to write
        self._used = 0  # slots from the oldest to the head, emptied ones included

    def find(self, key: int) -> tuple[Start, float] | None:
        slot = self._slot(key)
        if slot < 0:
            return None
        start = self._starts[slot]
        assert start is not None
        return start, self._ats[slot]

    def put(self, key: int, start: Start, at: float) -> None:
        """Add a slot for `key`, which must have none; a full ring drops its oldest."""
        if self._used == self.capacity:
            self.pop_oldest()
        slot = self._head
        home = self._home(key)
        bucket = home
        while self._index[bucket]:
            bucket = (bucket + 1) & self._mask
        self._index[bucket] = slot + 1
        self._keys[slot], self._starts[slot], self._ats[slot] = key, start, at
        self._homes[slot] = home
        self._head = (slot + 1) % self.capacity
        self._used += 1
        self.weight += len(start.plans)

    def remove(self, key: int) -> None:
        slot = self._slot(key)
        if slot >= 0:
            self._clear(slot)

    def pop_oldest(self, *, live_only: bool = False) -> None:
        """Drop the oldest slot; with `live_only`, the oldest one that holds a source."""
        while self._used:
            slot = (self._head - self._used) % self.capacity
            self._used -= 1
            if self._keys[slot] is not None:
                self._clear(slot)
                return
            if not live_only:
                return

    def oldest_is_stale(self, now: float) -> bool:
        """Is the oldest slot empty, or past the longest wait of what it started?"""
        return self.oldest_due() < now

    def oldest_due(self) -> float:
        """When the oldest slot turns stale (-inf when it is empty already)."""
        slot = (self._head - self._used) % self.capacity
        start = self._starts[slot]
        return -math.inf if start is None else self._ats[slot] + start.wait

    def __len__(self) -> int:
        return self._used

    def __iter__(self) -> Iterator[tuple[int, Start, float]]:
        """(key, start, time) of every live slot, oldest first."""
        for i in range(self._used):
            slot = (self._head - self._used + i) % self.capacity
            key, start = self._keys[slot], self._starts[slot]
            if key is not None and start is not None:
                yield key, start, self._ats[slot]

    def _home(self, key: int) -> int:
        if self._hashed[0] != key:
            self._hashed = (key, ((self._mult * key + self._add) & _WORD) >> self._shift)
        return self._hashed[1]

    def _slot(self, key: int) -> int:
        bucket = self._home(key)
        index, keys, mask = self._index, self._keys, self._mask
        while entry := index[bucket]:
            if keys[entry - 1] == key:
                return entry - 1
            bucket = (bucket + 1) & mask
        return -1

    def _clear(self, slot: int) -> None:
        start = self._starts[slot]
        assert start is not None
        self.weight -= len(start.plans)
        self._keys[slot] = self._starts[slot] = None
        bucket = self._homes[slot]
        while self._index[bucket] != slot + 1:
            bucket = (bucket + 1) & self._mask
        self._unindex(bucket)

    def _unindex(self, hole: int) -> None:
        """Empty bucket `hole`, moving back later entries of its run that may fill it."""
        index, homes, mask = self._index, self._homes, self._mask
        index[hole] = 0
        bucket = hole
        while True:
            bucket = (bucket + 1) & mask
            entry = index[bucket]
            if not entry:
                return
            if (bucket - hole) & mask <= (bucket - homes[entry - 1]) & mask:
                index[hole], index[bucket] = entry, 0
                hole = bucket
