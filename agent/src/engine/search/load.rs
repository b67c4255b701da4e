//! The bulk load of a restore: documents gathered into `_bulk` requests of
//! bounded size; items the cluster rejected for load (429, a tripped
//! circuit breaker) sent again after a pause, and a whole request refused
//! for load or size split in halves — never dropped. Any other rejected
//! document fails the load, naming it. Every write is `index` with the
//! document's own `_id`, so sending one twice leaves one document.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::client::{reason, Client};
use crate::error::Result;

/// A request holds at most this many bytes…
const BATCH_BYTES: usize = 8 << 20;
/// …and this many documents.
const BATCH_DOCUMENTS: usize = 2000;
/// Pauses and splits before the load gives up.
const MAX_ATTEMPTS: u32 = 40;

/// Documents waiting to be sent, as bulk line pairs.
pub struct Loader<'a> {
    client: &'a Client,
    body: Vec<u8>,
    /// Each document's action and source lines within `body`.
    items: Vec<Range<usize>>,
    /// Pauses and splits so far (the whole load's budget).
    attempts: u32,
    /// Documents the cluster acknowledged.
    pub loaded: u64,
}

/// What the cluster said of one item of a bulk answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Done,
    /// Rejected for load: send again after a pause.
    Again,
    /// Rejected for what it is: the load fails.
    Refused(String),
}

impl<'a> Loader<'a> {
    pub fn new(client: &'a Client) -> Loader<'a> {
        Loader {
            client,
            body: Vec::with_capacity(BATCH_BYTES + (1 << 20)),
            items: Vec::new(),
            attempts: 0,
            loaded: 0,
        }
    }

    /// Adds a document; true when the batch is full and should be sent.
    pub fn push(&mut self, index: &str, id: &str, routing: Option<&str>, source: &str) -> bool {
        let start = self.body.len();
        let mut action = serde_json::json!({"index": {"_index": index, "_id": id}});
        if let Some(routing) = routing {
            action["index"]["routing"] = Value::String(routing.to_string());
        }
        let _ = serde_json::to_writer(&mut self.body, &action);
        self.body.push(b'\n');
        self.body.extend_from_slice(source.as_bytes());
        self.body.push(b'\n');
        self.items.push(start..self.body.len());
        self.body.len() >= BATCH_BYTES || self.items.len() >= BATCH_DOCUMENTS
    }

    /// Sends what is gathered; returns once every document is acknowledged.
    pub async fn flush(&mut self) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let all: Vec<usize> = (0..self.items.len()).collect();
        let mut pending: VecDeque<Vec<usize>> = VecDeque::from([all]);
        let mut pause = Duration::from_millis(500);
        while let Some(group) = pending.pop_front() {
            self.client.stopped()?;
            let mut body = Vec::new();
            for &i in &group {
                body.extend_from_slice(&self.body[self.items[i].clone()]);
            }
            let answer = self
                .client
                .send_once(Method::POST, "_bulk", Some((body, "application/x-ndjson")))
                .await?;
            let status = answer.status.as_u16();
            let retry = match status {
                200 => {
                    let json = answer.json();
                    let verdicts = items(&json, group.len()).map_err(|e| {
                        self.client
                            .side
                            .error(format!("{}: a bulk answer {e}", self.client.address()))
                    })?;
                    let mut again = Vec::new();
                    for (&i, verdict) in group.iter().zip(verdicts) {
                        match verdict {
                            Item::Done => self.loaded += 1,
                            Item::Again => again.push(i),
                            Item::Refused(why) => {
                                return Err(self.client.side.error(format!(
                                    "{}: the cluster refused a document ({why})",
                                    self.client.address()
                                )))
                            }
                        }
                    }
                    (!again.is_empty()).then_some(vec![again])
                }
                // Too much at once, or no room: the same documents in
                // smaller requests.
                413 | 429 | 503 => Some(halves(group)),
                _ => return Err(self.client.refused(&Method::POST, "_bulk", &answer)),
            };
            if let Some(groups) = retry {
                self.attempts += 1;
                if self.attempts > MAX_ATTEMPTS {
                    return Err(self.client.side.error(format!(
                        "{}: the cluster kept rejecting documents for load (HTTP {status}: {}) after {MAX_ATTEMPTS} pauses; give it more capacity and run the restore again",
                        self.client.address(),
                        reason(&answer.json())
                    )));
                }
                tracing::warn!(status, pause = ?pause, "the cluster is rejecting bulk writes for load; pausing and sending them again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
                for g in groups.into_iter().rev() {
                    pending.push_front(g);
                }
            }
        }
        self.body.clear();
        self.items.clear();
        Ok(())
    }
}

/// A group in two halves (one document stays one).
fn halves(group: Vec<usize>) -> Vec<Vec<usize>> {
    if group.len() < 2 {
        return vec![group];
    }
    let mid = group.len() / 2;
    vec![group[..mid].to_vec(), group[mid..].to_vec()]
}

/// Each item's verdict, in request order.
pub fn items(answer: &Value, expected: usize) -> std::result::Result<Vec<Item>, String> {
    let list = answer["items"].as_array().ok_or("has no items")?;
    if list.len() != expected {
        return Err(format!(
            "holds {} items for {expected} documents",
            list.len()
        ));
    }
    Ok(list
        .iter()
        .map(|item| {
            let result = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = result["status"].as_u64().unwrap_or(0);
            let kind = result["error"]["type"].as_str().unwrap_or_default();
            if (200..300).contains(&status) {
                Item::Done
            } else if status == 429
                || kind == "es_rejected_execution_exception"
                || kind == "rejected_execution_exception"
                || kind == "circuit_breaking_exception"
            {
                Item::Again
            } else {
                Item::Refused(format!(
                    "index {}, _id {}: HTTP {status}: {}",
                    result["_index"].as_str().unwrap_or("?"),
                    result["_id"].as_str().unwrap_or("?"),
                    reason(&serde_json::json!({"error": result["error"].clone()}))
                ))
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_rejected_for_load_are_sent_again_others_fail_the_load() {
        let answer = json!({"errors": true, "items": [
            {"index": {"_index": "a", "_id": "1", "status": 201}},
            {"index": {"_index": "a", "_id": "2", "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
            {"index": {"_index": "a", "_id": "3", "status": 400,
                "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [n]"}}},
            {"index": {"_index": "a", "_id": "4", "status": 503,
                "error": {"type": "circuit_breaking_exception", "reason": "[parent] Data too large"}}},
        ]});
        let got = items(&answer, 4).expect("items");
        assert_eq!(got[0], Item::Done);
        assert_eq!(got[1], Item::Again);
        match &got[2] {
            Item::Refused(why) => {
                assert!(
                    why.contains("_id 3") && why.contains("mapper_parsing_exception"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[3], Item::Again);
        assert!(items(&answer, 3).is_err());
        assert!(items(&json!({}), 0).is_err());
    }

    #[test]
    fn a_group_splits_in_halves_down_to_one() {
        assert_eq!(halves(vec![1, 2, 3]), vec![vec![1], vec![2, 3]]);
        assert_eq!(halves(vec![7]), vec![vec![7]]);
    }
}
