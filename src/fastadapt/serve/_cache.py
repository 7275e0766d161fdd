"""An LRU of adapted states bounded by count and by bytes, safe under concurrent requests; identical requests
in flight at once are computed once (the later ones wait for the first)."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ._models import Adapted


class AdaptedCache:
    """``key -> Adapted``, least recently used first out when more than ``max_items`` entries or ``max_bytes``
    bytes of state are held. An entry larger than ``max_bytes`` alone is returned but not kept.

    ``on_event(name)`` is called with ``hit``, ``miss`` and ``eviction`` (the service counts them)."""

    def __init__(self, max_items: int, max_bytes: int, on_event: Callable[[str], None] = lambda name: None) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError(f"cache limits must be >= 1, got {max_items} items and {max_bytes} bytes")
        self.max_items, self.max_bytes, self.on_event = max_items, max_bytes, on_event
        self._entries: OrderedDict[str, Adapted] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._pending: dict[str, asyncio.Future[Adapted]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> Adapted | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: str, value: Adapted) -> None:
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries.pop(key).nbytes
            if value.nbytes > self.max_bytes:
                return
            self._entries[key] = value
            self._bytes += value.nbytes
            while len(self._entries) > self.max_items or self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.nbytes
                self.on_event("eviction")

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[Adapted]]) -> tuple[Adapted, bool]:
        """The cached value (``True``: it was cached or being computed), or ``compute()``'s, then cached."""
        found = self.get(key)
        if found is not None:
            self.on_event("hit")
            return found, True
        task = self._pending.get(key)
        cached = task is not None
        if task is None:
            self.on_event("miss")
            # its own task: a caller that goes away (a client disconnects) leaves it running for the others
            task = asyncio.ensure_future(compute())
            self._pending[key] = task

            def finished(done: asyncio.Future[Adapted]) -> None:  # runs before any waiter resumes
                self._pending.pop(key, None)
                if not done.cancelled() and done.exception() is None:
                    self.put(key, done.result())

            task.add_done_callback(finished)
        else:  # the same request is being computed: wait for it
            self.on_event("hit")
        return await asyncio.shield(task), cached

    def stats(self) -> dict[str, Any]:
        return {"items": len(self._entries), "bytes": self._bytes}
