"""How a benchmark run knows it is done, and what it feeds the process under test.

A :data:`Workload` is called once the process started: ``backlog`` hands back the end
offsets of a topic filled beforehand, ``paced`` waits for the group to own every partition
and then produces at a steady rate. ``wait_committed`` polls the broker until the group's
committed offsets reach those end offsets. Imported by ``run.py`` (after its ``sys.path``
lines, which make ``tests/drills.py`` importable).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import drills  # tests/drills.py, on sys.path through run.py
from confluent_kafka import ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient

from connector.adapters.avro import load_schema
from connector.core.records import TopicPartition
from devtools import samples

PARTITIONS = 6

# --------------------------------------------------------------------------- waiting


def wait_committed(
    admin: AdminClient,
    bootstrap: str,
    group: str,
    end_offsets: Mapping[TopicPartition, int],
    alive: Callable[[], bool],
    timeout_s: float,
) -> None:
    # Our own loop rather than drills.wait_committed: a 0.1 s poll keeps the wall time's
    # resolution well below a run's length, and a dead process fails at once.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process for group {group} exited before committing all")
        try:
            got = drills.committed_offsets(bootstrap, group, end_offsets, 5.0, admin=admin)
        except Exception:  # broker busy: not there yet, the deadline decides
            got = {}
        if got == dict(end_offsets):
            return
        time.sleep(0.1)
    raise RuntimeError(f"group {group}: committed offsets did not reach the end in {timeout_s}s")


# --------------------------------------------------------------------------- workloads

#: Called once the process under test started, with its group, an "is it alive" check and
#: how many group members it runs; returns the end offsets to wait for and how many events
#: they hold.
Workload = Callable[[str, Callable[[], bool], int], tuple[Mapping[TopicPartition, int], int]]


def backlog(produced: drills.Produced) -> Workload:
    """The events are on the topic before the process starts."""

    def workload(
        _group: str, _alive: Callable[[], bool], _members: int
    ) -> tuple[Mapping[TopicPartition, int], int]:
        return produced.end_offsets, produced.count

    return workload


def _wait_joined(
    admin: AdminClient, group: str, topic: str, alive: Callable[[], bool], members: int
) -> None:
    # Paced events must not wait for the group join, or their latency would include it.
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and alive():
        try:
            description = admin.describe_consumer_groups([group], request_timeout=5.0)[group]
            found = description.result(timeout=10.0)
            assigned = {
                (tp.topic, tp.partition)
                for member in found.members
                for tp in (member.assignment.topic_partitions if member.assignment else [])
            }
            # Every member in, every partition owned, each member with some: a rebalance
            # still to come (a second worker joining) would otherwise land mid-run.
            owners = [m for m in found.members if m.assignment and m.assignment.topic_partitions]
            if (
                found.state == ConsumerGroupState.STABLE
                and len(assigned) == PARTITIONS
                and len(owners) == members
            ):
                return
        except Exception:  # the group does not exist yet: not joined
            pass
        time.sleep(0.1)
    raise RuntimeError(f"group {group} did not join topic {topic} within 60 s")


def paced(admin: AdminClient, bootstrap: str, topic: str, count: int, rate: float) -> Workload:
    """Produce ``count`` events at ``rate`` per second once the process owns every
    partition: a load it can keep up with, so latency is the pipeline's, not the queue's."""

    def workload(
        group: str, alive: Callable[[], bool], members: int
    ) -> tuple[Mapping[TopicPartition, int], int]:
        _wait_joined(admin, group, topic, alive, members)
        schema = load_schema(drills.SCHEMA)
        # linger.ms 5: the record timestamp (CreateTime, set at produce()) stays close to the
        # moment it reaches the broker, so the producer adds little to the latency measured.
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        end_offsets: dict[TopicPartition, int] = {}

        def delivered(error: Any, message: Any) -> None:
            if error is None:
                key = (message.topic(), message.partition())
                end_offsets[key] = max(end_offsets.get(key, 0), message.offset() + 1)

        chunk = max(1, int(rate / 100))  # 100 chunks a second: smooth enough
        started = time.monotonic()
        base_ms = int(time.time() * 1000)
        for index, record in enumerate(samples.sample_events(count, 2, base_ms)):
            if index % chunk == 0:
                # Sleep until this chunk is due: a steady offered rate, not bursts.
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                producer.poll(0)
            producer.produce(topic, value=samples.encode(schema, record), on_delivery=delivered)
        if producer.flush(60) or sum(end_offsets.values()) != count:
            raise RuntimeError("paced producing failed")
        return end_offsets, count

    return workload
