"""Micro-batching by count, bytes and linger time. Pure: the clock is injected.

A batch closes when it holds ``max_events``, when the next event would push the request
body past ``max_bytes``, or ``linger_s`` after its first event arrived. An event too large
to share a request goes alone in a batch of its own (never dropped).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence

from connector.core.records import Batch, EncodedEvent, TopicPartition


def body_overhead(public_params_json: bytes) -> int:
    """Bytes of a request body around its events: ``{"publicParams":…,"data":[…]}``."""
    return len(b'{"publicParams":') + len(public_params_json) + len(b',"data":[]}')


_BODY = operator.attrgetter("body")


def render_body(public_params_json: bytes, events: Sequence[EncodedEvent]) -> bytes:
    """The request body for these events, built from their encoded JSON."""
    return b"".join(
        (
            b'{"publicParams":',
            public_params_json,
            b',"data":[',
            b",".join(map(_BODY, events)),  # map over attrgetter: no Python frame per event
            b"]}",
        )
    )


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
        self._events: list[EncodedEvent] = []
        self._size = overhead_bytes
        self._opened_at = 0.0
        self._ids = ids if ids is not None else itertools.count()

    def __len__(self) -> int:
        return len(self._events)

    def add(self, event: EncodedEvent) -> list[Batch]:
        """Add one event; returns the batches this closed (none, one, or two).

        The open batch closes before the event if the event does not fit in it, and the
        batch holding the event closes at once if the event filled it; so an oversized
        event closes its predecessor and then itself.
        """
        return self.add_many((event,))

    def add_many(self, events: Iterable[EncodedEvent]) -> list[Batch]:
        """``add`` for each event, in order; returns every batch this closed. One call per
        consume chunk: the hot path keeps the batch's state in locals."""
        closed: list[Batch] = []
        max_events, max_bytes = self._max_events, self._max_bytes
        open_events, size = self._events, self._size
        for event in events:
            length = len(event.body)
            # A comma separates every event after the first.
            if open_events and size + 1 + length > max_bytes:
                self._size = size
                closed.append(self._close())
                open_events, size = self._events, self._size
            if open_events:
                size += 1 + length
            else:
                self._opened_at = self._clock()
                size += length
            open_events.append(event)
            if len(open_events) >= max_events or size >= max_bytes:
                self._size = size
                closed.append(self._close())
                open_events, size = self._events, self._size
        self._size = size
        return closed

    def deadline(self) -> float | None:
        """When the open batch's linger expires, or None if nothing is open."""
        return self._opened_at + self._linger_s if self._events else None

    def poll(self) -> Batch | None:
        """Close the open batch if its linger time has passed."""
        deadline = self.deadline()
        if deadline is not None and self._clock() >= deadline:
            return self._close()
        return None

    def flush(self) -> Batch | None:
        """Close the open batch now (shutdown, revoke)."""
        return self._close() if self._events else None

    def _close(self) -> Batch:
        batch = Batch(next(self._ids), tuple(self._events), self._size)
        self._events = []
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

    def add_many(self, events: Sequence[EncodedEvent]) -> list[Batch]:
        closed: list[Batch] = []
        start = 0
        # A consume chunk comes in runs of one partition: one call per run.
        for end in range(1, len(events) + 1):
            if end == len(events) or (events[end].topic, events[end].partition) != (
                events[start].topic,
                events[start].partition,
            ):
                tp = (events[start].topic, events[start].partition)
                batcher = self._open.get(tp)
                if batcher is None:
                    batcher = self._open[tp] = self._new()
                closed += batcher.add_many(events[start:end])
                start = end
        return closed

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
