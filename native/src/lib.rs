//! event-sink's compiled hot path: a consume chunk's Avro message values → the API's
//! encoded events, in one pass, driven by the plan connector/mapping/plan.py writes.
//!
//! The Python path is the reference. For each message `Plan.run` (on columns) and
//! `Plan.run_messages` (on the consumer's own messages, grouped into runs of one
//! partition) return the event's JSON
//! bytes, None for a tombstone (a null value), or a str: the reason this extension does
//! not vouch for that message (corrupt bytes, an unusual encoding, a record the mapping
//! refuses). The caller runs the Python path on those, which decides: so a message's
//! outcome is always the reference's, only faster when it is a plain valid record.
//!
//! Safe Rust only, every read checked; no panic is expected, and one would still be
//! caught per message and turned into a deferral rather than reach Python.
#![forbid(unsafe_code)]

mod avro;
mod eventargs;
mod fast;
mod float;
mod input;
mod json;
mod leaf;
mod mapping;
mod plan;
mod render;
mod runs;
mod text;
mod tree;

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::avro::{Defer, Tree};
use crate::input::{ColumnMessage, Columns};
use crate::mapping::Message;

/// A compiled plan (connector/mapping/plan.py), run on consume chunks.
#[pyclass(frozen, module = "event_sink_native")]
struct Plan {
    plan: plan::Plan,
}

/// What one call reuses from message to message, so that a message allocates nothing but
/// its event's PyBytes: the decoded record's arena, and the buffer the event is written to.
/// The arena borrows the call's values (each call holds them all), so it is only cleared.
#[derive(Default)]
struct Scratch<'a> {
    tree: Tree<'a>,
    out: Vec<u8>,
    /// The fast path's eventargs, written while the record is read.
    args: Vec<u8>,
}

enum Outcome {
    /// The event's bytes are `Scratch::out`.
    Event,
    Tombstone,
    Deferred(&'static str),
}

impl Plan {
    fn one<'a>(
        &'a self,
        value: &'a Bound<'_, PyAny>,
        msg: &dyn Message,
        scratch: &mut Scratch<'a>,
    ) -> Outcome {
        if value.is_none() {
            return Outcome::Tombstone;
        }
        let Ok(bytes) = value.cast::<PyBytes>() else {
            return Outcome::Deferred("input: a value that is not bytes");
        };
        let buf = bytes.as_bytes();
        // An event is about the size of its record plus the API's names.
        scratch.out.reserve(2 * buf.len() + 128);
        let Scratch { tree, out, args } = scratch;
        // The fast path, when the plan has one; when it gives up, the tree decides.
        if let Some(fast) = &self.plan.fast {
            if fast::run(&self.plan, fast, buf, tree, args, msg, out).is_ok() {
                return Outcome::Event;
            }
        }
        let result = avro::decode(&self.plan.schema, buf, tree)
            .and_then(|record| mapping::map_record(&self.plan, tree, &record, msg, out));
        match result {
            Ok(()) => Outcome::Event,
            Err(Defer(reason)) => Outcome::Deferred(reason),
        }
    }
}

#[pymethods]
impl Plan {
    /// The plan of `text` (its JSON); ValueError when it does not parse or hold together.
    #[new]
    fn new(text: &str) -> PyResult<Self> {
        plan::parse(text)
            .map(|plan| Plan { plan })
            .map_err(PyValueError::new_err)
    }

    /// Each message's outcome, in order: the event's bytes, None (a tombstone) or the
    /// reason (str) to let the Python path decide. The lists must be of one length.
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyList>,
        topics: &Bound<'py, PyList>,
        partitions: &Bound<'py, PyList>,
        offsets: &Bound<'py, PyList>,
        timestamps: &Bound<'py, PyList>,
        keys: &Bound<'py, PyList>,
        headers: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyList>> {
        let count = values.len();
        let lists = [topics, partitions, offsets, timestamps, keys, headers];
        if lists.iter().any(|list| list.len() != count) {
            return Err(PyValueError::new_err(
                "every list must have one entry per value",
            ));
        }
        let columns = Columns {
            topics,
            partitions,
            offsets,
            timestamps,
            keys,
            headers,
        };
        let out = PyList::empty(py);
        // Held for the whole call: the arena borrows their bytes.
        let values: Vec<Bound<'py, PyAny>> = values.iter().collect();
        let mut scratch = Scratch::default();
        for (index, value) in values.iter().enumerate() {
            let msg = ColumnMessage {
                columns: &columns,
                index,
            };
            self.push(&out, value, &msg, &mut scratch)?;
        }
        Ok(out)
    }

    /// A consume call's messages (confluent_kafka `Message`s) as they come, in runs of
    /// consecutive messages of one partition: `(runs, errors)`. Each run is `(topic,
    /// partition, offsets, timestamps, outcomes, messages, others)`: four aligned lists (a
    /// timestamp is None when the broker gave none; an outcome as `run` gives it), and the
    /// indexes of the outcomes that are not an event's bytes, in order.
    /// `errors` are the messages whose `error()` is set, for the source to report: they
    /// carry no record. No per-message Python object is made but the event's bytes.
    fn run_messages<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'py, PyList>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let runs = PyList::empty(py);
        let errors = PyList::empty(py);
        let accessors = Accessors::new(py);
        // First what Python gives for each message (every call that can raise, in the order
        // a message at a time would make them), held for the call: the arena borrows the
        // values' bytes.
        let mut consumed = Vec::with_capacity(messages.len());
        for message in messages.iter() {
            let call = |i: usize| accessors.call(&message, i);
            if !call(ERROR)?.is_none() {
                errors.append(&message)?;
                continue;
            }
            let topic = call(TOPIC)?;
            let topic = topic.cast_into::<PyString>()?;
            let partition: i64 = call(PARTITION)?.extract()?;
            let offset_int = call(OFFSET)?;
            let offset: i64 = offset_int.extract()?;
            let stamp_pair = call(TIMESTAMP)?;
            let (kind, stamp, stamp_int) = match runs::stamp(&stamp_pair) {
                Some(parts) => parts,
                // Not a pair of ints: what extracting one raises.
                None => {
                    let (kind, stamp): (i64, i64) = stamp_pair.extract()?;
                    (kind, stamp, None)
                }
            };
            // TIMESTAMP_NOT_AVAILABLE is 0: no timestamp (what KafkaSource.consume says).
            let timestamp = (kind != 0).then_some(stamp);
            let value = call(VALUE)?;
            topic.to_str()?;
            consumed.push(runs::Consumed {
                message,
                topic,
                partition,
                offset_int,
                offset,
                stamp_int,
                timestamp,
                value,
            });
        }
        runs::append_runs(self, py, &consumed, &runs)?;
        Ok((runs, errors))
    }
}

/// The `Message` methods `run_messages` calls, by index into `Accessors::NAMES`.
const ERROR: usize = 0;
const TOPIC: usize = 1;
const PARTITION: usize = 2;
const OFFSET: usize = 3;
const TIMESTAMP: usize = 4;
const VALUE: usize = 5;

/// How `run_messages` calls a message's methods. On an exact instance of confluent_kafka's
/// own `Message`, its type's method descriptors directly: a static C type (immutable, no
/// instance dict, the generic attribute lookup) finds nothing else by name, and this skips
/// that lookup per call. Any other object (a subclass, a stand-in) by name, as Python would.
struct Accessors<'py> {
    message_type: Option<(Bound<'py, PyAny>, [Bound<'py, PyAny>; 6])>,
    names: [Bound<'py, PyString>; 6],
}

impl<'py> Accessors<'py> {
    const NAMES: [&'static str; 6] = [
        "error",
        "topic",
        "partition",
        "offset",
        "timestamp",
        "value",
    ];

    fn new(py: Python<'py>) -> Self {
        let names = Self::NAMES.map(|name| PyString::intern(py, name));
        let message_type = py
            .import("confluent_kafka.cimpl")
            .and_then(|module| module.getattr("Message"))
            .ok()
            .and_then(|ty| {
                let methods = names.clone().map(|name| ty.getattr(name).ok());
                let methods: Option<Vec<_>> = methods.into_iter().collect();
                let methods: [Bound<'py, PyAny>; 6] = methods?.try_into().ok()?;
                Some((ty, methods))
            });
        Accessors {
            message_type,
            names,
        }
    }

    #[inline(always)]
    fn call(&self, message: &Bound<'py, PyAny>, which: usize) -> PyResult<Bound<'py, PyAny>> {
        if let Some((ty, methods)) = &self.message_type {
            if message.is_exact_instance(ty) {
                if let Some(method) = methods.get(which) {
                    return method.call1((message,));
                }
            }
        }
        match self.names.get(which) {
            Some(name) => message.call_method0(name),
            None => Err(PyValueError::new_err("no such Message method")),
        }
    }
}

impl Plan {
    /// The message's outcome, and whether it is an event's bytes.
    fn outcome<'a, 'py>(
        &'a self,
        py: Python<'py>,
        value: &'a Bound<'py, PyAny>,
        msg: &dyn Message,
        scratch: &mut Scratch<'a>,
    ) -> (Bound<'py, PyAny>, bool) {
        // Last resort: nothing here is expected to panic (no indexing, no unwrap), but a
        // panic must not cross into Python: that message goes to the Python path.
        let outcome = catch_unwind(AssertUnwindSafe(|| self.one(value, msg, scratch)))
            .unwrap_or(Outcome::Deferred("internal: a panic, caught"));
        match outcome {
            Outcome::Event => (PyBytes::new(py, &scratch.out).into_any(), true),
            Outcome::Tombstone => (py.None().into_bound(py), false),
            Outcome::Deferred(reason) => (PyString::new(py, reason).into_any(), false),
        }
    }

    /// Appends the message's outcome; true when it is an event's bytes.
    fn push<'a, 'py>(
        &'a self,
        out: &Bound<'py, PyList>,
        value: &'a Bound<'py, PyAny>,
        msg: &dyn Message,
        scratch: &mut Scratch<'a>,
    ) -> PyResult<bool> {
        let (outcome, event) = self.outcome(out.py(), value, msg, scratch);
        out.append(outcome).map(|()| event)
    }
}

#[pymodule]
fn event_sink_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Plan>()?;
    m.add("PLAN_VERSION", plan::PLAN_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
