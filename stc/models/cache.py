"""The feature cache: encoded videos kept by their content, so back-to-back runs on the same
frames (a baseline and its compressed runs) encode once.

Least recently used first out, bounded in entries and in bytes (`Encoded.nbytes`); the newest
entry always stays, however large.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from ..results import Encoded


class FeatureCache:
    """``get(key, encode)``: the cached `Encoded` for ``key``, or ``encode()``'s, kept."""

    def __init__(self, entries: int, max_bytes: int, lock: threading.RLock | None = None):
        self.entries = entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Encoded] = OrderedDict()
        self._lock = lock if lock is not None else threading.RLock()

    def get(self, key: str, encode: Callable[[], Encoded]) -> tuple[Encoded, bool]:
        """The entry of ``key`` and whether it was cached (encoded outside the lock otherwise)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key], True
        encoded = encode()
        with self._lock:
            self._items[key] = encoded
            while len(self._items) > self.entries or (
                len(self._items) > 1 and sum(e.nbytes for e in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)
        return encoded, False

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
