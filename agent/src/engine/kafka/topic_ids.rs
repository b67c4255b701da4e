//! Topic ids (Kafka's topic UUIDs, KIP-516) through librdkafka's
//! `DescribeTopics`, which the rdkafka crate does not wrap. A topic
//! deleted and created again under the same name gets a new id: that is
//! how an incremental backup tells "the same topic, continued" from "a new
//! topic whose offsets happen to start at or past the previous end".
//!
//! This is the only module of the project with `unsafe` code: a handful
//! of librdkafka C calls, each pointer owned by one function and destroyed
//! on every path before it returns.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use rdkafka::bindings as ffi;
use rdkafka::client::Client;
use rdkafka::ClientContext;

/// The id of each named topic the cluster describes, as Kafka prints it
/// (URL-safe base64 without padding; librdkafka gives the standard
/// alphabet). A topic without one (a broker before Kafka 2.8, an
/// all-zero id) is left out; `Err` says why the call as a whole failed.
pub fn describe<C: ClientContext>(
    client: &Client<C>,
    names: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, String>, String> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let c_names: Vec<CString> = names
        .iter()
        .map(|n| CString::new(n.as_str()).map_err(|_| format!("topic name {n:?} holds a NUL")))
        .collect::<Result<_, _>>()?;
    let mut pointers: Vec<*const c_char> = c_names.iter().map(|n| n.as_ptr()).collect();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = client.native_ptr();
    // SAFETY: `rk` is a live client handle for the duration of `client`'s
    // borrow; every object created here is destroyed below, on all paths,
    // and the strings read from the result are copied before the event
    // (which owns them) is destroyed.
    unsafe {
        let queue = ffi::rd_kafka_queue_new(rk);
        let options = ffi::rd_kafka_AdminOptions_new(
            rk,
            ffi::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as c_char; 256];
        ffi::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let collection =
            ffi::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len());
        ffi::rd_kafka_DescribeTopics(rk, collection, options, queue);
        // The request's own timeout ends it; the margin only guards
        // against a result that never comes.
        let event = ffi::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(5_000));
        let out = if event.is_null() {
            Err("describing the topics timed out".to_string())
        } else {
            let read = read_result(event);
            ffi::rd_kafka_event_destroy(event);
            read
        };
        ffi::rd_kafka_TopicCollection_destroy(collection);
        ffi::rd_kafka_AdminOptions_destroy(options);
        ffi::rd_kafka_queue_destroy(queue);
        out
    }
}

/// The ids in a DescribeTopics result event.
///
/// # Safety
/// `event` must be a live DescribeTopics result event.
unsafe fn read_result(
    event: *mut ffi::rd_kafka_event_t,
) -> Result<BTreeMap<String, String>, String> {
    // SAFETY: per the function's contract; every pointer read here is
    // owned by the event and only copied from.
    unsafe {
        if ffi::rd_kafka_event_error(event) != ffi::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            return Err(text(ffi::rd_kafka_event_error_string(event)));
        }
        let result = ffi::rd_kafka_event_DescribeTopics_result(event);
        if result.is_null() {
            return Err("the cluster's answer was not a topic description".into());
        }
        let mut count = 0usize;
        let topics = ffi::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        let mut ids = BTreeMap::new();
        for i in 0..count {
            let topic = *topics.add(i);
            if !ffi::rd_kafka_TopicDescription_error(topic).is_null() {
                continue;
            }
            let uuid = ffi::rd_kafka_TopicDescription_topic_id(topic);
            if uuid.is_null()
                || (ffi::rd_kafka_Uuid_most_significant_bits(uuid) == 0
                    && ffi::rd_kafka_Uuid_least_significant_bits(uuid) == 0)
            {
                continue;
            }
            let name = text(ffi::rd_kafka_TopicDescription_name(topic));
            let id = text(ffi::rd_kafka_Uuid_base64str(uuid))
                .replace('+', "-")
                .replace('/', "_");
            if !name.is_empty() && !id.is_empty() {
                ids.insert(name, id);
            }
        }
        Ok(ids)
    }
}

/// A C string librdkafka owns, copied.
///
/// # Safety
/// `s` is null or a valid NUL-terminated string.
unsafe fn text(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: per the function's contract.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}
