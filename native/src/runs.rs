//! `run_messages`' runs: consecutive messages of one partition, each run's lists made at
//! their length once its messages are known (no list grown an item at a time).

use pyo3::prelude::*;
use pyo3::types::{PyInt, PyList, PyString, PyTuple};

use crate::input::KafkaMessage;
use crate::{Plan, Scratch};

/// A message without an error, as Python gave it.
pub(crate) struct Consumed<'py> {
    pub(crate) message: Bound<'py, PyAny>,
    pub(crate) topic: Bound<'py, PyString>,
    pub(crate) partition: i64,
    pub(crate) offset_int: Bound<'py, PyAny>,
    pub(crate) offset: i64,
    /// The timestamp's int object, when it is a plain int: no new one to make.
    pub(crate) stamp_int: Option<Bound<'py, PyAny>>,
    pub(crate) timestamp: Option<i64>,
    pub(crate) value: Bound<'py, PyAny>,
}

/// `Message.timestamp()`'s (kind, timestamp) when it is a tuple of two ints, and the
/// timestamp's object when that is a plain int.
pub(crate) fn stamp<'py>(
    pair: &Bound<'py, PyAny>,
) -> Option<(i64, i64, Option<Bound<'py, PyAny>>)> {
    let pair = pair.cast::<PyTuple>().ok()?;
    if pair.len() != 2 {
        return None;
    }
    let kind: i64 = pair.get_borrowed_item(0).ok()?.extract().ok()?;
    let item = pair.get_borrowed_item(1).ok()?;
    let stamp: i64 = item.extract().ok()?;
    let plain = item
        .is_exact_instance_of::<PyInt>()
        .then(|| item.to_owned());
    Some((kind, stamp, plain))
}

/// How many messages from the first are of its partition (its topic, by value).
fn run_length(consumed: &[Consumed<'_>], topic: &str) -> PyResult<usize> {
    let Some((first, rest)) = consumed.split_first() else {
        return Ok(0);
    };
    let mut len = 1;
    for one in rest {
        // The same str object (the common case) needs no comparing.
        let same = one.partition == first.partition
            && (one.topic.is(&first.topic) || one.topic.to_str()? == topic);
        if !same {
            break;
        }
        len += 1;
    }
    Ok(len)
}

/// Each run of `consumed` as `(topic, partition, offsets, timestamps, outcomes, messages,
/// others)`, appended to `runs`.
pub(crate) fn append_runs<'a, 'py>(
    plan: &'a Plan,
    py: Python<'py>,
    consumed: &'a [Consumed<'py>],
    runs: &Bound<'py, PyList>,
) -> PyResult<()> {
    let mut scratch = Scratch::default();
    let mut rest = consumed;
    while let Some(first) = rest.first() {
        let topic = first.topic.to_str()?;
        let (run, after) = rest.split_at(run_length(rest, topic)?.clamp(1, rest.len()));
        rest = after;
        let mut outcomes = Vec::with_capacity(run.len());
        let mut others = Vec::new();
        let mut offsets = Vec::with_capacity(run.len());
        let mut timestamps = Vec::with_capacity(run.len());
        for (at, one) in run.iter().enumerate() {
            let msg = KafkaMessage {
                message: &one.message,
                topic,
                partition: one.partition,
                offset: one.offset,
                timestamp: one.timestamp,
            };
            let (outcome, event) = plan.outcome(py, &one.value, &msg, &mut scratch);
            if !event {
                others.push(at);
            }
            outcomes.push(outcome);
            // The message's own int objects where they are plain ints: no new ones to make.
            offsets.push(if one.offset_int.is_exact_instance_of::<PyInt>() {
                one.offset_int.clone()
            } else {
                one.offset.into_pyobject(py)?.into_any()
            });
            timestamps.push(match one.timestamp.and(one.stamp_int.clone()) {
                Some(stamp) => stamp,
                None => one.timestamp.into_pyobject(py)?.into_any(),
            });
        }
        let run = PyTuple::new(
            py,
            [
                first.topic.clone().into_any(),
                first.partition.into_pyobject(py)?.into_any(),
                PyList::new(py, offsets)?.into_any(),
                PyList::new(py, timestamps)?.into_any(),
                PyList::new(py, outcomes)?.into_any(),
                PyList::new(py, run.iter().map(|one| &one.message))?.into_any(),
                PyList::new(py, others)?.into_any(),
            ],
        )?;
        runs.append(run)?;
    }
    Ok(())
}
