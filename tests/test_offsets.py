"""The offset tracker: never offer a commit past an undelivered record."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.offsets import OffsetTracker

TP = ("events", 0)


@st.composite
def reads_and_completion_order(draw: st.DrawFn) -> tuple[list[int], list[list[int]]]:
    """Increasing offsets with gaps (compaction, transaction markers), split into batches
    that complete in any order."""
    gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60))
    offsets, current = [], draw(st.integers(min_value=0, max_value=1000))
    for gap in gaps:
        offsets.append(current)
        current += gap
    cuts = sorted(
        draw(
            st.sets(
                st.integers(min_value=1, max_value=len(offsets) - 1)
                if len(offsets) > 1
                else st.nothing()
            )
        )
    )
    bounds = [0, *cuts, len(offsets)]
    batches = [offsets[a:b] for a, b in itertools.pairwise(bounds)]
    order = draw(st.permutations(batches))
    return offsets, list(order)


@given(reads_and_completion_order(), st.lists(st.integers(min_value=1, max_value=10)))
def test_position_never_passes_an_unresolved_offset(
    case: tuple[list[int], list[list[int]]], read_sizes: list[int]
) -> None:
    offsets, completion = case
    tracker = OffsetTracker()
    tracker.assign([TP])
    # Read as the connector does: runs of one partition's offsets per consume call
    # (track_run), with single reads (track) once the drawn run sizes are used up.
    index = 0
    for size in read_sizes:
        run = offsets[index : index + size]
        if run:
            receipt = tracker.track_run(TP, run)
        index += size
    for offset in offsets[index:]:
        receipt = tracker.track(TP, offset)
    delivered: set[int] = set()
    for batch in completion:
        receipt.resolve(batch)
        delivered.update(batch)
        position = tracker.committable().get(TP, tracker.committed().get(TP))
        undelivered = [o for o in offsets if o not in delivered]
        if position is not None:
            assert all(o >= position for o in undelivered), (position, undelivered)
        if position is not None:
            tracker.mark_committed({TP: position})
    # Everything delivered: the position is one past the last record read.
    assert tracker.committed()[TP] == offsets[-1] + 1
    assert tracker.pending == 0


@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=40, unique=True))
def test_pending_counts_read_minus_resolved(resolve_first: list[int]) -> None:
    tracker = OffsetTracker()
    receipt = tracker.track(TP, 0)
    for offset in range(1, 41):
        tracker.track(TP, offset)
    receipt.resolve(resolve_first)
    receipt.resolve(resolve_first)  # a repeat changes nothing
    assert tracker.pending == 41 - len(resolve_first)
    contiguous = 0
    while contiguous in resolve_first:
        contiguous += 1
    assert tracker.committable().get(TP) == (contiguous if contiguous else None)


def test_batches_finishing_out_of_order() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    for offset in range(10):
        receipt = tracker.track(TP, offset)
    receipt.resolve([5, 6, 7, 8, 9])
    assert tracker.committable() == {}  # 0..4 still in flight
    receipt.resolve([0, 1, 2])
    assert tracker.committable() == {TP: 3}
    tracker.mark_committed({TP: 3})
    assert tracker.committable() == {}
    receipt.resolve([3, 4])
    assert tracker.committable() == {TP: 10}


def test_resolution_from_a_revoked_assignment_is_ignored() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    old_receipt = tracker.track(TP, 0)
    tracker.revoke([TP])
    tracker.assign([TP])
    new_receipt = tracker.track(TP, 0)
    assert new_receipt != old_receipt
    old_receipt.resolve([0])
    assert tracker.committable() == {}
    assert tracker.pending == 1
    new_receipt.resolve([0])
    assert tracker.committable() == {TP: 1}


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    a, b = ("events", 0), ("events", 1)
    tracker.assign([a, b])
    ea = tracker.track(a, 0)
    eb = tracker.track(b, 0)
    tracker.track(b, 1)
    eb.resolve([0, 1])
    assert tracker.committable() == {b: 2}
    ea.resolve([0])
    assert tracker.committable() == {a: 1, b: 2}


def test_offsets_must_increase() -> None:
    tracker = OffsetTracker()
    tracker.track(TP, 5)
    with pytest.raises(ValueError, match="read after"):
        tracker.track(TP, 5)
    with pytest.raises(ValueError, match="read after"):
        tracker.track(TP, 3)


def test_a_run_of_offsets_must_increase_and_is_refused_whole() -> None:
    tracker = OffsetTracker()
    tracker.track_run(TP, [3, 4, 7])
    for bad in ([7, 8], [8, 10, 10], [9, 8], []):
        with pytest.raises(ValueError, match=r"read after|no offsets"):
            tracker.track_run(TP, bad)
    assert tracker.pending == 3  # nothing of a refused run was tracked
    assert tracker.track_run(TP, [8, 9]) == tracker.track(TP, 10)


def test_pending_by_partition() -> None:
    tracker = OffsetTracker()
    a, b = ("events", 0), ("events", 1)
    tracker.assign([a, b])
    ea = tracker.track(a, 0)
    tracker.track(a, 1)
    tracker.track(b, 7)
    ea.resolve([1])
    assert tracker.pending_by_partition() == {a: 1, b: 1}


@settings(max_examples=40, deadline=None)
@given(
    batches=st.integers(min_value=1, max_value=60),
    size=st.integers(min_value=1, max_value=400),
    seed=st.randoms(use_true_random=False),
)
def test_long_runs_resolved_in_any_order_and_repeated_pass_exactly_their_prefix(
    batches: int, size: int, seed: random.Random
) -> None:
    # Thousands of offsets per partition (past the point where passed ones are dropped
    # from the front), batches resolved out of order, some twice: after every step the
    # position is one past the resolved prefix, and pending counts the rest.
    tracker = OffsetTracker()
    tracker.assign([TP])
    offsets = [2 * i for i in range(batches * size)]  # gaps, as after compaction
    receipt = tracker.track_run(TP, offsets)
    chunks = [offsets[i * size : (i + 1) * size] for i in range(batches)]
    order = chunks + seed.sample(chunks, k=min(3, len(chunks)))
    order = seed.sample(order[:batches], k=batches) + order[batches:]
    done: set[int] = set()
    for chunk in order:
        receipt.resolve(chunk)
        done.update(chunk)
        passed = next((i for i, o in enumerate(offsets) if o not in done), len(offsets))
        # One past the last offset of the resolved prefix; nothing before any passed.
        expected = offsets[passed - 1] + 1 if passed else None
        assert tracker.committable().get(TP) == expected
        assert tracker.pending == len(offsets) - len(done)
    more = offsets[-1] + 5
    tracker.track(TP, more)  # reading goes on after everything passed
    receipt.resolve([more])
    assert tracker.committable()[TP] == more + 1
    assert tracker.pending == 0
