"""Combining the partitions' batches into rounds: one integrator per round, each partition's runs in
stream order, at most one run of a partition per round, nothing lost or repeated."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from thawline.services.broker_worker import _merge


def test_one_integrator_makes_one_round_of_every_partition() -> None:
    rounds = _merge([[("acme", "p0")], [("acme", "p1")], [("acme", "p2")]])
    assert rounds == [("acme", ["p0", "p1", "p2"])]


def test_integrators_alternate_without_reordering_a_partition() -> None:
    rounds = _merge(
        [
            [("acme", "p0a"), ("bolt", "p0b"), ("acme", "p0c")],
            [("bolt", "p1a")],
            [("acme", "p2a"), ("acme", "p2b")],
        ]
    )
    # p2's second run waits for the next acme round; p1 joins the first bolt round.
    assert rounds == [
        ("acme", ["p0a", "p2a"]),
        ("bolt", ["p0b", "p1a"]),
        ("acme", ["p0c", "p2b"]),
    ]


def test_no_batches_make_no_rounds() -> None:
    assert _merge([]) == []
    assert _merge([[], []]) == []


@given(
    st.lists(
        st.lists(st.sampled_from(["acme", "bolt", "", "crow"]), max_size=6),
        max_size=6,
    )
)
def test_every_run_once_in_order_one_integrator_and_one_run_per_partition_a_round(
    actors: list[list[str]],
) -> None:
    partitions = [[(a, (p, i, a)) for i, a in enumerate(runs)] for p, runs in enumerate(actors)]
    rounds = _merge(partitions)
    seen: dict[int, list[int]] = {p: [] for p in range(len(actors))}
    for actor, items in rounds:
        assert items, "a round without a run"
        assert {a for _p, _i, a in items} == {actor}
        mine = [p for p, _i, _a in items]
        assert len(mine) == len(set(mine)), "two runs of one partition in a round"
        for p, i, _a in items:
            seen[p].append(i)
    assert seen == {p: list(range(len(runs))) for p, runs in enumerate(actors)}
