"""The collector pause around event batches (``services/gc_pause.py``)."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable, Iterator

import pytest

from thawline.services import gc_pause
from thawline.services.gc_pause import gc_paused


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    gc.unfreeze()
    if was:
        gc.enable()
    else:
        gc.disable()


class Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_paused_inside_and_running_after_with_the_survivors_frozen() -> None:
    gc.enable()
    before = gc.get_freeze_count()
    with gc_paused():
        assert not gc.isenabled()
        kept = [Cycle() for _ in range(100)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + 100  # what was alive at the end is out of the way
    assert all(k.me is k for k in kept)


def test_cycles_that_died_during_the_pause_are_collected_when_it_ends_not_frozen() -> None:
    gc.enable()
    with gc_paused():
        dead = Cycle()
        probe = _watch(dead)
        del dead
        assert probe(), "paused: a cycle waits"
    assert not probe()


def test_nested_and_shared_between_threads_it_resumes_once_the_last_holder_leaves() -> None:
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        assert inside.wait(5)
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread still holds it
    release.set()
    t.join(5)
    assert gc.isenabled()


def test_a_collector_disabled_before_is_left_alone() -> None:
    gc.disable()
    frozen = gc.get_freeze_count()
    with gc_paused():
        pass
    assert not gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_cyclic_garbage_frozen_while_in_use_is_collected_by_the_periodic_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gc.enable()
    monkeypatch.setattr(gc_pause, "SWEEP_EVERY", 3)
    monkeypatch.setattr(gc_pause, "_batches", 0)
    with gc_paused():
        in_use = Cycle()  # alive when the batch ends: frozen with the rest
    probe = _watch(in_use)
    del in_use
    gc.collect()
    assert probe(), "a frozen cycle is not collected before the sweep"
    with gc_paused():
        pass
    with gc_paused():
        pass  # the third batch: unfreeze, collect in full, freeze again
    assert not probe(), "the sweep collected it"


def _watch(obj: object) -> Callable[[], bool]:
    """Whether ``obj`` is still alive, without keeping it alive."""
    ref = weakref.ref(obj)
    return lambda: ref() is not None
