"""Remembering every run ID of a job in 32 bytes each, so a 1M-ID job stays small.

A Python ``set`` of UUID strings costs about 120 bytes per ID. Here each ID is reduced
to a 127-bit BLAKE2b fingerprint kept in open addressing (linear probing) over two
``array('Q')`` columns at most half full. A false "duplicate" would need two distinct IDs
to share 127 bits: at a million IDs the odds are about 1 in 10^26.
"""

from __future__ import annotations

from array import array
from hashlib import blake2b
from typing import Final

_INITIAL: Final = 1 << 10


class SeenIds:
    """An add-only set of run IDs; ``add`` says whether the ID is new."""

    __slots__ = ("_count", "_high", "_low", "_mask")

    def __init__(self) -> None:
        self._high = array("Q", bytes(8 * _INITIAL))
        self._low = array("Q", bytes(8 * _INITIAL))
        self._mask = _INITIAL - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, run_id: str) -> bool:
        """Remember ``run_id``; False when it was seen before."""
        digest = blake2b(run_id.encode(), digest_size=16).digest()
        high = int.from_bytes(digest[:8], "little") | 1  # 0 marks an empty slot
        low = int.from_bytes(digest[8:], "little")
        highs, lows, mask = self._high, self._low, self._mask
        slot = high & mask
        while stored := highs[slot]:
            if stored == high and lows[slot] == low:
                return False
            slot = (slot + 1) & mask
        highs[slot], lows[slot] = high, low
        self._count += 1
        if self._count * 2 > mask:
            self._grow()
        return True

    def _grow(self) -> None:
        old_high, old_low = self._high, self._low
        size = (self._mask + 1) * 2
        self._high = array("Q", bytes(8 * size))
        self._low = array("Q", bytes(8 * size))
        self._mask = mask = size - 1
        highs, lows = self._high, self._low
        for high, low in zip(old_high, old_low, strict=True):
            if high:
                slot = high & mask
                while highs[slot]:
                    slot = (slot + 1) & mask
                highs[slot], lows[slot] = high, low
