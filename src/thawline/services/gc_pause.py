"""Keep Python's cyclic garbage collector out of the way of event batches.

A batch of 10,000 events lives for about a second: its validated models, rows and decisions
survive the young collections that their own allocation triggers, are promoted to the oldest
generation and die there, so the collector keeps running full collections over the whole heap
(every account's feature state): a fifth of ingestion's time (measured: 12 full collections,
1.9 s of 8.5 s for 100,000 events). Worse, each full collection stops every thread for 70-170 ms,
and a gateway's ``POST /v1/authorize`` waiting behind one misses its few milliseconds.

So, while a batch is handled, the collector is paused (reference counting frees the batch's
objects as usual); when the last batch in flight ends, the young generation (everything made during
the pause) is collected once, and what is still alive is frozen (``gc.freeze``):
mostly feature state, which lives as long as the process and has no reference cycles. Later
collections walk only what came after. Every ``SWEEP_EVERY`` batches everything is unfrozen and
collected in full once, so cyclic garbage that was frozen while still in use (a request in
flight at that moment) is reclaimed too: the pause delays cyclic garbage, it never keeps it.

The pause nests and is shared between threads. It leaves a collector that was disabled before
alone (no pause, no freeze, no sweep).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SWEEP_EVERY = 256  # batches between full collections of the frozen heap

_lock = threading.Lock()
_holders = 0
_resume = False  # whether the collector was enabled when the first holder came
_batches = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the body with the cyclic collector paused (reference counting still frees memory)."""
    global _holders, _resume, _batches  # noqa: PLW0603 — one process-wide collector and its holders
    with _lock:
        if _holders == 0:
            _resume = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _resume:
                _batches += 1
                if _batches % SWEEP_EVERY == 0:
                    gc.unfreeze()
                    gc.collect()
                else:
                    gc.collect(0)  # cycles made meanwhile (other requests') are collected, not frozen
                gc.freeze()
                gc.enable()


def freeze_startup_heap() -> None:
    """Move everything alive once a long-running process has started (modules, schemas, the app,
    compiled rules) out of the collector's view; call it once, just before serving.

    None of it becomes garbage while the process runs, yet every full collection walked it (about
    140,000 objects, 70 ms on the benchmark machine). Frozen objects are still freed by reference
    counting when they are released, and the periodic sweep above collects them in full.
    """
    gc.collect()
    gc.freeze()
