//! event-sink's compiled hot path: a consume chunk's Avro message values → the API's
//! encoded events, in one pass, driven by the plan connector/mapping/plan.py writes.
//!
//! The Python path is the reference. For each message `Plan.run` (on columns) and
//! `Plan.run_records` (on SourceRecords) return the event's JSON
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
mod input;
mod json;
mod mapping;
mod plan;
mod render;
mod text;

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::avro::Defer;
use crate::input::{ColumnMessage, Columns, RecordMessage};
use crate::mapping::Message;

/// A compiled plan (connector/mapping/plan.py), run on consume chunks.
#[pyclass(frozen, module = "event_sink_native")]
struct Plan {
    plan: plan::Plan,
}

enum Outcome {
    Event(Vec<u8>),
    Tombstone,
    Deferred(&'static str),
}

impl Plan {
    fn one(&self, value: &Bound<'_, PyAny>, msg: &dyn Message) -> Outcome {
        if value.is_none() {
            return Outcome::Tombstone;
        }
        let Ok(bytes) = value.cast::<PyBytes>() else {
            return Outcome::Deferred("input: a value that is not bytes");
        };
        let result = avro::decode(&self.plan.schema, bytes.as_bytes()).and_then(|record| {
            mapping::map_record(&self.plan, &record, msg, bytes.as_bytes().len())
        });
        match result {
            Ok(event) => Outcome::Event(event),
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
        for index in 0..count {
            let value = values.get_item(index)?;
            let msg = ColumnMessage {
                columns: &columns,
                index,
            };
            self.push(&out, &value, &msg)?;
        }
        Ok(out)
    }

    /// `run` on a list of connector.core.records.SourceRecord (or any objects with its
    /// attributes): each attribute is read only when the plan needs it.
    fn run_records<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for record in records.iter() {
            let msg = RecordMessage { record: &record };
            match msg.value() {
                Ok(value) => self.push(&out, &value, &msg)?,
                Err(Defer(reason)) => out.append(reason)?,
            }
        }
        Ok(out)
    }
}

impl Plan {
    fn push(
        &self,
        out: &Bound<'_, PyList>,
        value: &Bound<'_, PyAny>,
        msg: &dyn Message,
    ) -> PyResult<()> {
        let py = out.py();
        // Last resort: nothing here is expected to panic (no indexing, no unwrap), but a
        // panic must not cross into Python: that message goes to the Python path.
        let outcome = catch_unwind(AssertUnwindSafe(|| self.one(value, msg)))
            .unwrap_or(Outcome::Deferred("internal: a panic, caught"));
        match outcome {
            Outcome::Event(event) => out.append(PyBytes::new(py, &event)),
            Outcome::Tombstone => out.append(py.None()),
            Outcome::Deferred(reason) => out.append(reason),
        }
    }
}

#[pymodule]
fn event_sink_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Plan>()?;
    m.add("PLAN_VERSION", plan::PLAN_VERSION)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
