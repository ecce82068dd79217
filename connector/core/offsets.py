"""The one owner of offsets: what was read, what is resolved, what may be committed.

Guarantee: the position offered for commit on a partition is never past a record that
was read and not yet resolved (delivered). Records resolve in any order; the position
advances over the longest resolved prefix of what was read, in read order. Offsets the
source never handed over (compaction holes, transaction markers) are covered by the
next record read after them. Pure: no Kafka, no I/O.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable

from connector.core.records import TopicPartition

# Passed offsets are dropped from the front of ``read`` in one step once they are this
# many and at least half of it: amortised, no per-offset pop.
_COMPACT_AFTER = 4096


class _PartitionState:
    __slots__ = ("head", "position", "read", "receipt", "resolved")

    def __init__(self) -> None:
        self.receipt: Receipt | None = None  # one per assignment, so identity tells them apart
        # Offsets read, in read order; those before ``head`` are passed.
        self.read: list[int] = []
        self.head = 0
        self.resolved: set[int] = set()  # resolved offsets still behind an unresolved one
        self.position: int | None = None  # next offset to commit (last passed + 1)

    @property
    def unpassed(self) -> int:
        """Offsets read and not yet passed."""
        return len(self.read) - self.head


class Receipt:
    """What resolves records tracked together: hand it on with them, call ``resolve`` once
    they are delivered (or dead-lettered). Every record of one assignment of a partition
    gets the same receipt. A receipt of an earlier assignment of the
    partition (a batch that finished after its partition was revoked) resolves nothing:
    the new owner reads those records again from the last commit, so nothing is lost."""

    __slots__ = ("_state", "_tracker", "tp")

    def __init__(self, tracker: OffsetTracker, tp: TopicPartition, state: _PartitionState):
        self._tracker = tracker
        self._state = state
        self.tp = tp

    def resolve(self, offsets: Iterable[int]) -> None:
        self._tracker._resolve(self.tp, self._state, offsets)


class OffsetTracker:
    """Tracks records from read to resolved, per partition and assignment.

    Each assignment of a partition starts a new state; tracking hands back a
    :class:`Receipt` bound to it, so resolutions of a revoked assignment are ignored.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._pending = 0

    @property
    def pending(self) -> int:
        """Records read and not yet resolved, over all partitions."""
        return self._pending

    def pending_by_partition(self) -> dict[TopicPartition, int]:
        """Records read and not yet resolved, per assigned partition."""
        return {tp: st.unpassed - len(st.resolved) for tp, st in self._partitions.items()}

    def assigned(self) -> list[TopicPartition]:
        return list(self._partitions)

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Start tracking partitions (a new assignment for each)."""
        for tp in tps:
            self._drop(tp)
            state = self._partitions[tp] = _PartitionState()
            state.receipt = Receipt(self, tp, state)

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Forget partitions; later resolutions of their records are ignored."""
        for tp in tps:
            self._drop(tp)

    def _drop(self, tp: TopicPartition) -> None:
        state = self._partitions.pop(tp, None)
        if state is not None:
            self._pending -= state.unpassed - len(state.resolved)
        self._committed.pop(tp, None)

    def track(self, tp: TopicPartition, offset: int) -> Receipt:
        """Record that ``offset`` was read; returns the receipt that resolves it.

        Offsets must arrive in increasing order per partition, as Kafka delivers them.
        """
        state = self._partitions.get(tp)
        if state is None:  # read before the assignment callback ran: treat as assigned
            self.assign([tp])
            state = self._partitions[tp]
        if state.unpassed:
            if offset <= state.read[-1]:
                raise ValueError(f"{tp}: offset {offset} read after {state.read[-1]}")
        elif state.position is not None and offset < state.position:
            raise ValueError(f"{tp}: offset {offset} read after position {state.position}")
        state.read.append(offset)
        self._pending += 1
        assert state.receipt is not None  # set by assign
        return state.receipt

    def track_run(self, tp: TopicPartition, offsets: list[int]) -> Receipt:
        """``track`` for several offsets of one partition, in read order; one call per
        partition and consume call instead of one per record."""
        if not offsets:
            raise ValueError(f"{tp}: no offsets to track")
        if not all(map(operator.lt, offsets, itertools.islice(offsets, 1, None))):  # C speed
            for before, after in itertools.pairwise(offsets):
                if after <= before:
                    raise ValueError(f"{tp}: offset {after} read after {before}")
        receipt = self.track(tp, offsets[0])
        state = self._partitions[tp]
        state.read.extend(offsets[1:])
        self._pending += len(offsets) - 1
        return receipt

    def _resolve(self, tp: TopicPartition, state: _PartitionState, offsets: Iterable[int]) -> None:
        """Mark records delivered (or otherwise done), for :meth:`Receipt.resolve`."""
        if self._partitions.get(tp) is not state:
            return  # revoked, or assigned again since: the next owner reads them again
        offsets = offsets if isinstance(offsets, list) else list(offsets)
        read, resolved, head = state.read, state.resolved, state.head
        if not resolved and offsets and read[head : head + len(offsets)] == offsets:
            # The common case, checked whole in C: exactly the next offsets read, with
            # nothing resolved ahead of them. They pass at once.
            head += len(offsets)
            self._pending -= len(offsets)
            state.position = offsets[-1] + 1
        else:
            for offset in offsets:
                # Ignore repeats and offsets already passed: each record resolves once.
                if head < len(read) and offset >= read[head] and offset not in resolved:
                    resolved.add(offset)
                    self._pending -= 1
            while head < len(read) and read[head] in resolved:
                resolved.discard(read[head])
                state.position = read[head] + 1
                head += 1
        if head >= _COMPACT_AFTER and 2 * head >= len(read):
            del read[:head]
            head = 0
        state.head = head

    def committable(self) -> dict[TopicPartition, int]:
        """Positions that moved since the last commit: partition → next offset to read."""
        out = {}
        for tp, state in self._partitions.items():
            if state.position is not None and state.position != self._committed.get(tp):
                out[tp] = state.position
        return out

    def mark_committed(self, positions: dict[TopicPartition, int]) -> None:
        """The broker acknowledged these positions."""
        for tp, position in positions.items():
            # Acknowledgements may arrive out of order: a position never moves back.
            if tp in self._partitions and position > self._committed.get(tp, -1):
                self._committed[tp] = position

    def committed(self) -> dict[TopicPartition, int]:
        """Last acknowledged positions of the assigned partitions."""
        return dict(self._committed)
