"""Backpressure decisions: which partitions wait, and when they may go on (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.core.backpressure import PendingCaps, decide

A, B = ("t", 0), ("t", 1)
CAPS = PendingCaps(total=100, per_partition=40)


def test_a_partition_at_its_cap_waits_alone_and_resumes_at_half() -> None:
    first = decide(
        CAPS,
        pending_total=50,
        pending_by_partition={A: 40, B: 10},
        assigned=[A, B],
        paused=set(),
        over_total_cap=False,
        halted=False,
    )
    assert first.wanted == {A}
    still = decide(
        CAPS,
        pending_total=40,
        pending_by_partition={A: 21, B: 19},
        assigned=[A, B],
        paused=first.wanted,
        over_total_cap=False,
        halted=False,
    )
    assert still.wanted == {A}  # above half its cap: still waiting, no flapping
    resumed = decide(
        CAPS,
        pending_total=30,
        pending_by_partition={A: 20, B: 10},
        assigned=[A, B],
        paused=still.wanted,
        over_total_cap=False,
        halted=False,
    )
    assert resumed.wanted == frozenset()


def test_the_total_cap_and_a_halt_hold_every_partition() -> None:
    full = decide(
        CAPS,
        pending_total=100,
        pending_by_partition={A: 30, B: 30},
        assigned=[A, B],
        paused=set(),
        over_total_cap=False,
        halted=False,
    )
    assert full.wanted == {A, B}
    assert full.over_total_cap
    draining = decide(
        CAPS,
        pending_total=60,
        pending_by_partition={A: 30, B: 30},
        assigned=[A, B],
        paused=full.wanted,
        over_total_cap=True,
        halted=False,
    )
    assert draining.wanted == {A, B}  # the total must fall to half before anything resumes
    halted = decide(
        CAPS,
        pending_total=0,
        pending_by_partition={},
        assigned=[A, B],
        paused=set(),
        over_total_cap=False,
        halted=True,
    )
    assert halted.wanted == {A, B}


@given(
    counts=st.dictionaries(st.sampled_from([A, B, ("u", 2)]), st.integers(0, 200)),
    paused=st.sets(st.sampled_from([A, B, ("u", 2)])),
    over=st.booleans(),
)
def test_no_partition_under_half_its_cap_waits_unless_everything_must(
    counts: dict[tuple[str, int], int], paused: set[tuple[str, int]], over: bool
) -> None:
    total = sum(counts.values())
    decision = decide(
        CAPS,
        pending_total=total,
        pending_by_partition=counts,
        assigned=list(counts),
        paused=paused,
        over_total_cap=over,
        halted=False,
    )
    if not decision.over_total_cap:
        assert all(counts[tp] > CAPS.per_partition / 2 for tp in decision.wanted)
        assert all(tp in decision.wanted for tp, n in counts.items() if n >= CAPS.per_partition)
    else:
        assert decision.wanted == set(counts)
    assert decision.over_total_cap == (total >= CAPS.total or (over and total > CAPS.total / 2))
