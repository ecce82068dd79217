"""Micro-batching by count, bytes and linger time. Pure: the clock is injected.

A batch closes when it holds ``max_events``, when the next event would push the request
body past ``max_bytes``, or ``linger_s`` after its first event arrived. An event too large
to share a request goes alone in a batch of its own (never dropped).

Events come in runs (columns of one partition), and a batch is cut from them by
arithmetic on each run's running byte count: the per-event work is C (``len``,
``accumulate``), and Python runs once per batch closed, not once per event.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator

from connector.core.records import Batch, EncodedEvent, EventRun, Events, TopicPartition


def body_overhead(public_params_json: bytes) -> int:
    """Bytes of a request body around its events: ``{"publicParams":…,"data":[…]}``."""
    return len(b'{"publicParams":') + len(public_params_json) + len(b',"data":[]}')


def render_body(public_params_json: bytes, events: Events) -> bytes:
    """The request body for these events, built from their encoded JSON."""
    head = b'{"publicParams":' + public_params_json + b',"data":['
    runs = events.runs
    parts = runs[0].bodies.copy() if len(runs) == 1 else list(events.bodies())
    if not parts:
        return head + b"]}"
    # The head and the tail ride on the first and the last event, so the body is one join:
    # one copy of its bytes, not a second one to wrap the joined events.
    parts[0] = head + parts[0]
    parts[-1] += b"]}"
    return b",".join(parts)


def comma_sizes(bodies: list[bytes]) -> list[int]:
    """``sizes[k]``: the bytes of the first ``k`` bodies, each with one comma."""
    with_commas = map(operator.add, map(len, bodies), itertools.repeat(1))
    return list(itertools.accumulate(with_commas, initial=0))


class Batcher:
    """Accumulates encoded events into batches; one open batch at a time."""

    def __init__(
        self,
        *,
        max_events: int,
        max_bytes: int,
        linger_s: float,
        overhead_bytes: int,
        clock: Callable[[], float],
        ids: Iterator[int] | None = None,
    ) -> None:
        if not 1 <= max_events <= 500:
            raise ValueError("max_events must be within 1..500 (the API's limit)")
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._linger_s = linger_s
        self._overhead = overhead_bytes
        self._clock = clock
        self._open: list[EventRun] = []  # slices of runs, in order
        self._count = 0
        self._size = overhead_bytes
        self._opened_at = 0.0
        self._ids = ids if ids is not None else itertools.count()

    def __len__(self) -> int:
        return self._count

    def add(self, event: EncodedEvent) -> list[Batch]:
        """Add one event; returns the batches this closed (none, one, or two).

        The open batch closes before the event if the event does not fit in it, and the
        batch holding the event closes at once if the event filled it; so an oversized
        event closes its predecessor and then itself.
        """
        return self.add_runs(EventRun.of((event,)))

    def add_many(self, events: Iterable[EncodedEvent]) -> list[Batch]:
        """``add`` for each event, in order (tests and tools; the pipeline adds runs)."""
        return self.add_runs(EventRun.of(events))

    def add_runs(self, runs: Iterable[EventRun]) -> list[Batch]:
        """Each run's events, in order, as ``add`` would take them one by one; returns
        every batch this closed."""
        closed: list[Batch] = []
        max_bytes = self._max_bytes
        for run in runs:
            # The run's bytes with a comma each (sum over len: C, no object per event).
            weight = sum(map(len, run.bodies)) + len(run)
            if self._size + weight < max_bytes:  # no batch closes on bytes in this run
                closed += self._add_counted(run, weight)
            else:
                closed += self._add_weighed(run)
        return closed

    def _add_counted(self, run: EventRun, weight: int) -> list[Batch]:
        """``add_runs`` of a run whose events all fit the bytes limit (``weight``: its
        bytes, a comma each): cut by count."""
        closed: list[Batch] = []
        length, start = len(run), 0
        while start < length:
            count = self._count
            part = run.cut(start, start + self._max_events - count)
            taken = len(part)
            start += taken
            if start < length:
                part_weight = sum(map(len, part.bodies)) + taken
                weight -= part_weight
            else:  # the rest of the run: what is left of its weight
                part_weight = weight
            if count:
                self._size += part_weight
            else:
                self._opened_at = self._clock()
                self._size = self._overhead - 1 + part_weight
            self._open.append(part)
            self._count = count + taken
            if self._count >= self._max_events or self._size >= self._max_bytes:
                closed.append(self._close())
        return closed

    def _add_weighed(self, run: EventRun) -> list[Batch]:
        """``add_runs`` of a run that reaches the bytes limit: cut where each batch's
        running byte count says."""
        closed: list[Batch] = []
        max_events, max_bytes = self._max_events, self._max_bytes
        sizes, length, start = comma_sizes(run.bodies), len(run), 0
        while start < length:
            count = self._count
            # What the open batch weighs before these events; an empty one has no comma
            # before its first event.
            base = self._size if count else self._overhead - 1
            fits = bisect.bisect_right(sizes, max_bytes - base + sizes[start]) - 1 - start
            take = min(fits, max_events - count, length - start)
            if not count:
                take = max(take, 1)  # an oversized event goes alone, never dropped
                self._opened_at = self._clock()
            if take:
                self._open.append(run.cut(start, start + take))
                self._count = count + take
                self._size = base + sizes[start + take] - sizes[start]
            start += take
            # Full, or the run's next event does not fit: the batch closes.
            if self._count >= max_events or self._size >= max_bytes or start < length:
                closed.append(self._close())
        return closed

    def deadline(self) -> float | None:
        """When the open batch's linger expires, or None if nothing is open."""
        return self._opened_at + self._linger_s if self._count else None

    def poll(self) -> Batch | None:
        """Close the open batch if its linger time has passed."""
        deadline = self.deadline()
        if deadline is not None and self._clock() >= deadline:
            return self._close()
        return None

    def flush(self) -> Batch | None:
        """Close the open batch now (shutdown, revoke)."""
        return self._close() if self._count else None

    def _close(self) -> Batch:
        batch = Batch(next(self._ids), Events(self._open), self._size)
        self._open = []
        self._count = 0
        self._size = self._overhead
        return batch


class PartitionedBatcher:
    """``delivery.ordering: partition``: one open batch per partition, so a request holds
    one partition's events; each is a :class:`Batcher` made by ``make`` (the same limits
    for every partition), given the shared batch ids."""

    def __init__(self, make: Callable[[Iterator[int]], Batcher]) -> None:
        self._make = make
        self._ids = itertools.count()  # shared: batch ids stay unique across partitions
        self._open: dict[TopicPartition, Batcher] = {}

    def _new(self) -> Batcher:
        return self._make(self._ids)

    def __len__(self) -> int:
        return sum(len(batcher) for batcher in self._open.values())

    def add_runs(self, runs: Iterable[EventRun]) -> list[Batch]:
        closed: list[Batch] = []
        for run in runs:
            tp = (run.topic, run.partition)
            batcher = self._open.get(tp)
            if batcher is None:
                batcher = self._open[tp] = self._new()
            closed += batcher.add_runs((run,))
        return closed

    def add_many(self, events: Iterable[EncodedEvent]) -> list[Batch]:
        return self.add_runs(EventRun.of(events))

    def add(self, event: EncodedEvent) -> list[Batch]:
        return self.add_many((event,))

    def deadline(self) -> float | None:
        deadlines = [d for b in self._open.values() if (d := b.deadline()) is not None]
        return min(deadlines) if deadlines else None

    def poll(self) -> Batch | None:
        """One batch whose linger passed (call again for the next)."""
        for tp, batcher in list(self._open.items()):
            batch = batcher.poll()
            if batch is not None:
                del self._open[tp]
                return batch
        return None

    def flush(self) -> Batch | None:
        """One open batch, closed now (call again until None)."""
        for tp, batcher in list(self._open.items()):
            batch = batcher.flush()
            del self._open[tp]
            if batch is not None:
                return batch
        return None
