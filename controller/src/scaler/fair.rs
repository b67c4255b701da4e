//! Fair poll rounds. Every namespace runs its own round of its scalers, on
//! its own schedule: a round starts at a tick when that namespace's
//! previous round is over, so one tenant's slow scalers make only that
//! tenant's rounds late. Inside a round at most `per_namespace` scalers are
//! polled at once, and every poll also holds one of the loop's shared
//! permits, which bound memory (each poll holds at most one metric answer,
//! itself bounded by `--max-metric-response-bytes`). Since a namespace never
//! holds more than `per_namespace` of those permits, the others always
//! find some.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// `items` by namespace, without the namespaces `busy` says are still in
/// their previous round (they skip this tick rather than queue behind it).
pub fn rounds_to_start<T>(
    items: impl IntoIterator<Item = (String, T)>,
    busy: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<T>> {
    let mut rounds: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for (namespace, item) in items {
        if !busy(&namespace) {
            rounds.entry(namespace).or_default().push(item);
        }
    }
    rounds
}

/// One namespace's round: `poll` of every item, at most `per_namespace` at
/// once, each holding one of `shared`'s permits while it runs.
pub async fn run_round<T, F, Fut>(
    items: Vec<T>,
    per_namespace: usize,
    shared: Arc<Semaphore>,
    poll: F,
) where
    F: Fn(T) -> Fut,
    Fut: Future<Output = ()>,
{
    futures::stream::iter(items)
        .for_each_concurrent(per_namespace.max(1), |item| {
            let shared = shared.clone();
            let polled = poll(item);
            async move {
                // The semaphore is never closed; were it, polling stops.
                if let Ok(_permit) = shared.acquire().await {
                    polled.await;
                }
            }
        })
        .await;
}

/// The running round of each namespace. Dropping it stops them all (the
/// scaler loop is aborted at shutdown).
#[derive(Default)]
pub struct Lanes {
    running: HashMap<String, JoinHandle<()>>,
}

impl Lanes {
    pub fn busy(&self, namespace: &str) -> bool {
        self.running
            .get(namespace)
            .is_some_and(|round| !round.is_finished())
    }

    pub fn start(&mut self, namespace: String, round: impl Future<Output = ()> + Send + 'static) {
        self.running.insert(namespace, tokio::spawn(round));
    }

    /// Forgets finished rounds, so namespaces without scalers leave nothing.
    pub fn prune(&mut self) {
        self.running.retain(|_, round| !round.is_finished());
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        for round in self.running.values() {
            round.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn rounds_group_by_namespace_and_skip_busy_ones() {
        let items = [("a", 1), ("b", 2), ("a", 3), ("c", 4)].map(|(ns, i)| (ns.to_string(), i));
        let rounds = rounds_to_start(items, |ns| ns == "c");
        assert_eq!(
            rounds,
            BTreeMap::from([("a".to_string(), vec![1, 3]), ("b".to_string(), vec![2])])
        );
    }

    #[tokio::test]
    async fn a_slow_namespace_delays_only_itself() {
        let shared = Arc::new(Semaphore::new(4));
        let started = Instant::now();
        let a_in_flight = Arc::new(AtomicUsize::new(0));
        let a_peak = Arc::new(AtomicUsize::new(0));
        let b_done = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut lanes = Lanes::default();
        {
            let (in_flight, peak) = (a_in_flight.clone(), a_peak.clone());
            lanes.start(
                "a".into(),
                run_round((0..8).collect(), 2, shared.clone(), move |_: i32| {
                    let (in_flight, peak) = (in_flight.clone(), peak.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                }),
            );
        }
        let done = b_done.clone();
        lanes.start(
            "b".into(),
            run_round((0..3).collect(), 2, shared.clone(), move |_: i32| {
                let done = done.clone();
                async move {
                    if let Ok(mut d) = done.lock() {
                        d.push(started.elapsed());
                    }
                }
            }),
        );
        // b's round ends long before one of a's polls (300 ms) could have
        // made room for it; a's whole round takes 4 × 300 ms.
        while lanes.busy("b") && started.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!lanes.busy("b"), "b's round is over while a's runs");
        assert!(lanes.busy("a"));
        let times = b_done.lock().expect("lock").clone();
        assert_eq!(times.len(), 3);
        assert!(
            times.iter().all(|t| *t < Duration::from_millis(250)),
            "{times:?}"
        );
        // The next tick starts b again and leaves a alone.
        let next = rounds_to_start([("a".to_string(), 9), ("b".to_string(), 10)], |ns| {
            lanes.busy(ns)
        });
        assert_eq!(next, BTreeMap::from([("b".to_string(), vec![10])]));
        lanes.prune();
        assert_eq!(lanes.running(), 1);
        assert_eq!(
            a_peak.load(Ordering::SeqCst),
            2,
            "a never holds more than its share"
        );
    }
}
