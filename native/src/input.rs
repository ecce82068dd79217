//! The chunk as the caller hands it over: a message's Kafka metadata is read from Python
//! only when the plan needs it (most records carry their own uuid and need none).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use pyo3::{intern, Bound};

use crate::avro::{Defer, Res};
use crate::mapping::Message;

fn optional_bytes(value: &Bound<'_, PyAny>) -> Res<Option<Vec<u8>>> {
    if value.is_none() {
        return Ok(None);
    }
    let bytes = value
        .cast::<PyBytes>()
        .map_err(|_| Defer("input: metadata that is not bytes"))?;
    Ok(Some(bytes.as_bytes().to_vec()))
}

/// (name, value) of each header, in order, until `visit` says it found what it wants.
fn each_header(
    headers: &Bound<'_, PyAny>,
    mut visit: impl FnMut(&str, Option<Vec<u8>>) -> bool,
) -> Res<()> {
    let iter = headers
        .try_iter()
        .map_err(|_| Defer("input: headers that are not a sequence"))?;
    for pair in iter {
        let pair = pair.map_err(|_| Defer("input: headers"))?;
        let name = pair
            .get_item(0)
            .map_err(|_| Defer("input: a header without a name"))?;
        let name = name
            .cast::<PyString>()
            .map_err(|_| Defer("input: a header name that is not a str"))?;
        let name = name.to_str().map_err(|_| Defer("input: a header name"))?;
        let value = pair
            .get_item(1)
            .map_err(|_| Defer("input: a header without a value"))?;
        if visit(name, optional_bytes(&value)?) {
            break;
        }
    }
    Ok(())
}

fn header(headers: &Bound<'_, PyAny>, name: &str) -> Res<Option<Option<Vec<u8>>>> {
    let mut found = None;
    each_header(headers, |n, value| {
        if n == name {
            found = Some(value);
            return true;
        }
        false
    })?;
    Ok(found)
}

fn non_empty_header(headers: &Bound<'_, PyAny>, name: &str) -> Res<Option<Vec<u8>>> {
    let mut found = None;
    each_header(headers, |n, value| match value {
        Some(v) if n == name && !v.is_empty() => {
            found = Some(v);
            true
        }
        _ => false,
    })?;
    Ok(found)
}

/// The chunk as columns: one list per field, of one length.
pub struct Columns<'a, 'py> {
    pub topics: &'a Bound<'py, PyList>,
    pub partitions: &'a Bound<'py, PyList>,
    pub offsets: &'a Bound<'py, PyList>,
    pub timestamps: &'a Bound<'py, PyList>,
    pub keys: &'a Bound<'py, PyList>,
    pub headers: &'a Bound<'py, PyList>,
}

/// One message of a `Columns` chunk.
pub struct ColumnMessage<'a, 'py> {
    pub columns: &'a Columns<'a, 'py>,
    pub index: usize,
}

impl<'py> ColumnMessage<'_, 'py> {
    fn item(&self, list: &Bound<'py, PyList>) -> Res<Bound<'py, PyAny>> {
        list.get_item(self.index)
            .map_err(|_| Defer("input: a list shorter than the values"))
    }
}

impl Message for ColumnMessage<'_, '_> {
    fn topic(&self) -> Res<String> {
        self.item(self.columns.topics)?
            .extract()
            .map_err(|_| Defer("input: a topic that is not a str"))
    }

    fn partition(&self) -> Res<i64> {
        self.item(self.columns.partitions)?
            .extract()
            .map_err(|_| Defer("input: a partition that is not an int"))
    }

    fn offset(&self) -> Res<i64> {
        self.item(self.columns.offsets)?
            .extract()
            .map_err(|_| Defer("input: an offset that is not an int"))
    }

    fn timestamp(&self) -> Res<Option<i64>> {
        self.item(self.columns.timestamps)?
            .extract()
            .map_err(|_| Defer("input: a timestamp that is not an int"))
    }

    fn key(&self) -> Res<Option<Vec<u8>>> {
        optional_bytes(&self.item(self.columns.keys)?)
    }

    fn header(&self, name: &str) -> Res<Option<Option<Vec<u8>>>> {
        header(&self.item(self.columns.headers)?, name)
    }

    fn non_empty_header(&self, name: &str) -> Res<Option<Vec<u8>>> {
        non_empty_header(&self.item(self.columns.headers)?, name)
    }
}

/// A consumed message (confluent_kafka's `Message`): its position and timestamp are read
/// once, for the caller's tracking anyway; its key and headers only when the plan needs
/// them.
pub struct KafkaMessage<'a, 'py> {
    pub message: &'a Bound<'py, PyAny>,
    pub topic: &'a str,
    pub partition: i64,
    pub offset: i64,
    pub timestamp: Option<i64>,
}

impl<'py> KafkaMessage<'_, 'py> {
    fn call(&self, name: &Bound<'py, PyString>) -> Res<Bound<'py, PyAny>> {
        self.message
            .call_method0(name)
            .map_err(|_| Defer("input: a message without a Message method"))
    }

    /// Its headers, or None when it has none (confluent_kafka gives None, not []).
    fn headers(&self) -> Res<Option<Bound<'py, PyAny>>> {
        let headers = self.call(intern!(self.message.py(), "headers"))?;
        Ok(if headers.is_none() {
            None
        } else {
            Some(headers)
        })
    }
}

impl Message for KafkaMessage<'_, '_> {
    fn topic(&self) -> Res<String> {
        Ok(self.topic.to_owned())
    }

    fn partition(&self) -> Res<i64> {
        Ok(self.partition)
    }

    fn offset(&self) -> Res<i64> {
        Ok(self.offset)
    }

    fn timestamp(&self) -> Res<Option<i64>> {
        Ok(self.timestamp)
    }

    fn key(&self) -> Res<Option<Vec<u8>>> {
        optional_bytes(&self.call(intern!(self.message.py(), "key"))?)
    }

    fn header(&self, name: &str) -> Res<Option<Option<Vec<u8>>>> {
        match self.headers()? {
            None => Ok(None),
            Some(headers) => header(&headers, name),
        }
    }

    fn non_empty_header(&self, name: &str) -> Res<Option<Vec<u8>>> {
        match self.headers()? {
            None => Ok(None),
            Some(headers) => non_empty_header(&headers, name),
        }
    }
}
