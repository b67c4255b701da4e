//! Probe permits: at most `--max-concurrent-probes` probes in flight, of
//! which one namespace holds at most `--max-probes-per-namespace`. Without
//! the second bound, a tenant's slow targets with long timeouts would hold
//! every permit and starve every other namespace's failovers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The runner's permits, shared by every probe loop.
#[derive(Debug)]
pub struct Permits {
    global: Arc<Semaphore>,
    per_namespace: usize,
    namespaces: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A probe's right to run, released when dropped, with how long it waited
/// for each part.
#[derive(Debug)]
pub struct Permit {
    // None only if a semaphore was closed, which this module never does;
    // a probe then runs unbounded rather than never.
    _namespace: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
    /// Waiting for the namespace's own share: the namespace's doing.
    pub namespace_wait: Duration,
    /// Waiting for a permit of the whole runner: the runner is too busy.
    pub global_wait: Duration,
}

impl Permits {
    pub fn new(global: usize, per_namespace: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_namespace: per_namespace.clamp(1, global.max(1)),
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for the namespace's share first, then for a global permit, so
    /// a namespace at its share never holds global permits while it waits.
    pub async fn acquire(&self, namespace: &str) -> Permit {
        let started = Instant::now();
        let share = self.share(namespace);
        let own = share.acquire_owned().await.ok();
        let namespace_wait = started.elapsed();
        let global = self.global.clone().acquire_owned().await.ok();
        Permit {
            _namespace: own,
            _global: global,
            namespace_wait,
            global_wait: started.elapsed() - namespace_wait,
        }
    }

    fn share(&self, namespace: &str) -> Arc<Semaphore> {
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        namespaces
            .entry(namespace.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_namespace)))
            .clone()
    }

    /// Forgets the shares of namespaces without failovers (their permits
    /// in flight stay valid: they hold their semaphore).
    pub fn retain(&self, live: &HashSet<String>) {
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        namespaces.retain(|ns, _| live.contains(ns));
    }

    /// The per-namespace share in effect (never more than the global limit).
    pub fn per_namespace(&self) -> usize {
        self.per_namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_namespace_cannot_take_every_permit() {
        let permits = Arc::new(Permits::new(4, 2));
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(permits.acquire("hostile").await);
        }
        // A third probe of the same namespace waits for its share...
        let waiting = {
            let permits = permits.clone();
            tokio::spawn(async move { permits.acquire("hostile").await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...while another namespace finds permits at once.
        let victim = tokio::time::timeout(Duration::from_secs(1), permits.acquire("victim"))
            .await
            .expect("the victim is not starved");
        assert!(victim.global_wait < Duration::from_millis(500));
        drop(held.pop());
        let third = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released")
            .expect("task");
        assert!(third.namespace_wait > Duration::ZERO);
    }

    #[tokio::test]
    async fn the_global_limit_still_holds() {
        let permits = Arc::new(Permits::new(2, 2));
        let _a = permits.acquire("a").await;
        let _b = permits.acquire("b").await;
        let blocked = tokio::time::timeout(Duration::from_millis(50), permits.acquire("c")).await;
        assert!(blocked.is_err(), "a third probe waits for a global permit");
    }

    #[test]
    fn the_share_never_exceeds_the_whole() {
        assert_eq!(Permits::new(8, 16).per_namespace(), 8);
        assert_eq!(Permits::new(64, 16).per_namespace(), 16);
        assert_eq!(Permits::new(64, 0).per_namespace(), 1);
    }

    #[tokio::test]
    async fn shares_of_gone_namespaces_are_forgotten() {
        let permits = Permits::new(4, 1);
        let held = permits.acquire("gone").await;
        permits.retain(&HashSet::new());
        assert!(permits.namespaces.lock().expect("lock").is_empty());
        drop(held);
    }
}
