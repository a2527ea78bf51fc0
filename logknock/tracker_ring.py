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


class FirstStepRing:
    """The ring and its index. `slot(key)` finds a source's slot; the tracker's
    lanes then read `starts[slot]` and `ats[slot]` and `clear(slot)` it, with no
    second lookup. Only the ring writes those arrays."""

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
        self.starts: list[Start | None] = [None] * capacity
        self.ats = array("d", bytes(8 * capacity))
        self._homes = array("i", bytes(4 * capacity))
        self._hashed = (-1, 0)  # the last key hashed and its bucket: slot() then put()
        self._head = 0  # the next slot to write
        self._used = 0  # slots from the oldest to the head, emptied ones included

    def find(self, key: int) -> tuple[Start, float] | None:
        slot = self.slot(key)
        if slot < 0:
            return None
        start = self.starts[slot]
        assert start is not None
        return start, self.ats[slot]

    def slot(self, key: int) -> int:
        """The slot of `key`, or -1; its bucket is remembered for a `put` that follows.

        The bucket is the top bits of (mult * key + add) mod 2**_W, taken with a
        shift and the index mask: the same bits as reducing first, one big-int
        operation fewer."""
        bucket = (self._mult * key + self._add >> self._shift) & self._mask
        self._hashed = (key, bucket)
        index, keys, mask = self._index, self._keys, self._mask
        while entry := index[bucket]:
            if keys[entry - 1] == key:
                return entry - 1
            bucket = (bucket + 1) & mask
        return -1

    def put(self, key: int, start: Start, at: float) -> None:
        """Add a slot for `key`, which must have none; a full ring drops its oldest."""
        if self._used == self.capacity:
            self.pop_oldest()
        slot = self._head
        hashed, home = self._hashed
        if hashed != key:
            home = (self._mult * key + self._add >> self._shift) & self._mask
        index, mask = self._index, self._mask
        bucket = home
        while index[bucket]:
            bucket = (bucket + 1) & mask
        index[bucket] = slot + 1
        self._keys[slot] = key
        self.starts[slot] = start
        self.ats[slot] = at
        self._homes[slot] = home
        self._head = (slot + 1) % self.capacity
        self._used += 1
        self.weight += start.weight

    def remove(self, key: int) -> None:
        slot = self.slot(key)
        if slot >= 0:
            self.clear(slot)

    def clear(self, slot: int) -> None:
        """Empty a slot that holds a source; it leaves the ring when it is the oldest.

        Its bucket is emptied by backward-shift deletion: later entries of the
        same run that may sit in the hole move back, so no tombstone is left."""
        start = self.starts[slot]
        assert start is not None
        self.weight -= start.weight
        self._keys[slot] = self.starts[slot] = None
        index, homes, mask = self._index, self._homes, self._mask
        hole = homes[slot]
        while index[hole] != slot + 1:
            hole = (hole + 1) & mask
        index[hole] = 0
        bucket = hole
        while entry := index[bucket := (bucket + 1) & mask]:
            if (bucket - hole) & mask <= (bucket - homes[entry - 1]) & mask:
                index[hole], index[bucket] = entry, 0
                hole = bucket

    def pop_oldest(self, *, live_only: bool = False) -> None:
        """Drop the oldest slot; with `live_only`, the oldest one that holds a source."""
        while self._used:
            slot = (self._head - self._used) % self.capacity
            self._used -= 1
            if self._keys[slot] is not None:
                self.clear(slot)
                return
            if not live_only:
                return

    def drop_stale(self, now: float) -> None:
        """Drop the oldest slots while they are empty or past the longest wait of what
        they started. One loop over the flat arrays: a flood makes this the sweep's work."""
        starts, ats, capacity = self.starts, self.ats, self.capacity
        while self._used:
            slot = (self._head - self._used) % capacity
            start = starts[slot]
            due = -math.inf if start is None else ats[slot] + start.wait
            if not due < now:
                return
            self._used -= 1
            if start is not None:
                self.clear(slot)

    def oldest_due(self) -> float:
        """When the oldest slot turns stale: -inf when it is empty already, inf when
        the ring holds no slot at all."""
        if not self._used:
            return math.inf
        slot = (self._head - self._used) % self.capacity
        start = self.starts[slot]
        return -math.inf if start is None else self.ats[slot] + start.wait

    def __len__(self) -> int:
        return self._used

    def __iter__(self) -> Iterator[tuple[int, Start, float]]:
        """(key, start, time) of every live slot, oldest first."""
        for i in range(self._used):
            slot = (self._head - self._used + i) % self.capacity
            key, start = self._keys[slot], self.starts[slot]
            if key is not None and start is not None:
                yield key, start, self.ats[slot]
