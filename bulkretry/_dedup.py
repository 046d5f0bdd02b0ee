"""Remembering every run ID of a job in about 17 bytes each, so a 1M-ID job stays small.

A Python ``set`` of UUID strings costs about 120 bytes per ID. Here each ID is reduced
to a 128-bit BLAKE2b fingerprint: 12 of its bits pick one of 4,096 shards, and each shard
keeps the rest in two sorted ``array('Q')`` columns, found by bisection and inserted in
place. Nothing is kept empty (an open-addressing table sits a quarter to half full) and
nothing is rebuilt (a table that doubles holds the old and the new copy at once): the
memory is the fingerprints and the arrays' 1/16 of headroom. Shards stay short (about 250
IDs at a million), so an insert moves a few kilobytes. A false "duplicate" would need two
distinct IDs to share 128 bits: at a million IDs the odds are about 1 in 10^27.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from hashlib import blake2b
from typing import Final

_SHARD_BITS: Final = 12
_SHARD_MASK: Final = (1 << _SHARD_BITS) - 1
_LOW: Final = (1 << 64) - 1


class SeenIds:
    """An add-only set of run IDs; ``add`` says whether the ID is new."""

    __slots__ = ("_count", "_highs", "_lows")

    def __init__(self) -> None:
        self._highs = [array("Q") for _ in range(1 << _SHARD_BITS)]
        self._lows = [array("Q") for _ in range(1 << _SHARD_BITS)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, run_id: str) -> bool:
        """Remember ``run_id``; False when it was seen before."""
        high, low = _fingerprint(run_id)
        shard = low & _SHARD_MASK
        highs = self._highs[shard]
        at = bisect_left(highs, high)
        lows = self._lows[shard]
        end = len(highs)
        while at < end and highs[at] == high:  # equal high halves: almost never
            if lows[at] == low:
                return False
            at += 1
        highs.insert(at, high)
        lows.insert(at, low)
        self._count += 1
        return True


class Fingerprints:
    """A map from run ID to a number (a file offset), in about 25 bytes an entry.

    The same fingerprints and shards as ``SeenIds``, with a third sorted column for the
    value: the journal's resume index keeps, per run ID, where its last record starts.
    """

    __slots__ = ("_count", "_highs", "_lows", "_values")

    def __init__(self) -> None:
        self._highs = [array("Q") for _ in range(1 << _SHARD_BITS)]
        self._lows = [array("Q") for _ in range(1 << _SHARD_BITS)]
        self._values = [array("q") for _ in range(1 << _SHARD_BITS)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, run_id: str, value: int) -> int | None:
        """Map ``run_id`` to ``value``; returns what it mapped to before (None: new)."""
        shard, high, low, at = self._find(run_id)
        values = self._values[shard]
        if at >= 0:
            before: int = values[at]
            values[at] = value
            return before
        at = -at - 1
        self._highs[shard].insert(at, high)
        self._lows[shard].insert(at, low)
        values.insert(at, value)
        self._count += 1
        return None

    def get(self, run_id: str) -> int | None:
        """What ``run_id`` maps to, or None."""
        shard, _, _, at = self._find(run_id)
        return self._values[shard][at] if at >= 0 else None

    def _find(self, run_id: str) -> tuple[int, int, int, int]:
        """Shard, fingerprint halves, and the index (or ``-insertion point - 1``)."""
        high, low = _fingerprint(run_id)
        shard = low & _SHARD_MASK
        highs, lows = self._highs[shard], self._lows[shard]
        at = bisect_left(highs, high)
        end = len(highs)
        while at < end and highs[at] == high:
            if lows[at] == low:
                return shard, high, low, at
            at += 1
        return shard, high, low, -at - 1


def _fingerprint(run_id: str) -> tuple[int, int]:
    """The ID's 128-bit BLAKE2b digest as two 64-bit halves (high, low)."""
    value = int.from_bytes(blake2b(run_id.encode(), digest_size=16).digest(), "little")
    return value & _LOW, value >> 64
