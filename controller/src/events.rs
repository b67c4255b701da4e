//! Kubernetes Events (events.k8s.io/v1) with client-go's series: the same
//! event about the same object within six minutes raises the first one's
//! `series.count` instead of creating another.
//!
//! kube's `Recorder` does the same, but keeps every Event it wrote, whole,
//! in its cache: a few KiB each, 4.4 MiB of a thousand-backup controller's
//! heap. This cache keeps the key, the Event's name and a count.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// client-go's window for a series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Event names are DNS subdomains; the suffix is `.` and 16 hex digits.
const MAX_NAME_PREFIX: usize = 253 - 17;
/// What every Event of ours does: the controllers act by reconciling.
const ACTION: &str = "Reconcile";

/// One event about one object, as the reconcilers decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

impl Event {
    /// News: something happened as it should.
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Event {
        Event {
            warning: false,
            reason,
            note: note.into(),
        }
    }

    /// Something needs a person's attention.
    pub fn warning(reason: &'static str, note: impl Into<String>) -> Event {
        Event {
            warning: true,
            reason,
            note: note.into(),
        }
    }

    /// `warning` or `normal` as `warning` says.
    pub fn new(warning: bool, reason: &'static str, note: impl Into<String>) -> Event {
        Event {
            warning,
            reason,
            note: note.into(),
        }
    }
}

/// What makes two events the same: who, what, and the note (a backup that
/// fails for another reason is a new event, not a count of the first).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    reason: &'static str,
    warning: bool,
    note: u64,
}

impl Key {
    fn new(regarding: &ObjectReference, event: &Event) -> Key {
        let mut hasher = DefaultHasher::new();
        event.note.hash(&mut hasher);
        Key {
            kind: regarding.kind.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            uid: regarding.uid.clone(),
            reason: event.reason,
            warning: event.warning,
            note: hasher.finish(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    event: String,
    count: i32,
    last: Instant,
}

/// The write an event takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// A new Event with this name.
    Create(String),
    /// Raise the named Event's series to this count.
    Count(String, i32),
}

/// The series bookkeeping, apart from the API.
#[derive(Debug, Default)]
pub struct SeriesCache {
    entries: HashMap<Key, Entry>,
    swept: Option<Instant>,
}

impl SeriesCache {
    /// Decides the write for `event` at `now`; `name` makes a fresh Event
    /// name. The entry is taken at once, so a concurrent same event counts.
    fn observe(&mut self, key: Key, now: Instant, name: impl FnOnce() -> String) -> Write {
        self.sweep(now);
        match self.entries.get_mut(&key) {
            Some(entry) if now.duration_since(entry.last) < SERIES_WINDOW => {
                entry.count += 1;
                entry.last = now;
                Write::Count(entry.event.clone(), entry.count)
            }
            _ => {
                let event = name();
                self.started(key, event.clone(), now);
                Write::Create(event)
            }
        }
    }

    /// A new Event replaced one that is gone.
    fn started(&mut self, key: Key, event: String, now: Instant) {
        self.entries.insert(
            key,
            Entry {
                event,
                count: 1,
                last: now,
            },
        );
    }

    /// The write failed or its Event is gone: the next one starts afresh.
    fn forget(&mut self, key: &Key) {
        self.entries.remove(key);
    }

    /// Drops series that ended, at most once a minute (each publish would
    /// otherwise walk the whole cache).
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.swept = Some(now);
        self.entries
            .retain(|_, e| now.duration_since(e.last) < SERIES_WINDOW);
        self.entries.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `regarding`'s name and the time in hex, as client-go names Events.
fn event_name(regarding: &ObjectReference, controller: &str, now: Timestamp) -> String {
    let prefix = regarding.name.as_deref().unwrap_or(controller);
    let cut = (0..=MAX_NAME_PREFIX.min(prefix.len()))
        .rev()
        .find(|i| prefix.is_char_boundary(*i))
        .unwrap_or(0);
    format!(
        "{}.{:x}",
        prefix[..cut].trim_end_matches(['.', '-']),
        now.as_nanosecond()
    )
}

#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    cache: Arc<Mutex<SeriesCache>>,
}

impl EventRecorder {
    pub fn new(client: Client, controller: &str, instance: &str) -> EventRecorder {
        EventRecorder {
            client,
            controller: controller.to_string(),
            // The API server allows 128 characters.
            instance: instance.chars().take(128).collect(),
            cache: Arc::default(),
        }
    }

    /// Creates the Event, or raises its series' count.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        event: &Event,
    ) -> Result<(), kube::Error> {
        let key = Key::new(regarding, event);
        let now = Timestamp::now();
        let write = self.lock().observe(key.clone(), Instant::now(), || {
            event_name(regarding, &self.controller, now)
        });
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let result = match &write {
            Write::Create(name) => self.create(&api, name, regarding, event, now).await,
            Write::Count(name, count) => {
                let series = EventSeries {
                    count: *count,
                    last_observed_time: MicroTime(now),
                };
                let patch = serde_json::json!({ "series": series });
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    // Expired (the API server keeps Events an hour by
                    // default) or deleted: start a new one.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        let name = event_name(regarding, &self.controller, now);
                        let created = self.create(&api, &name, regarding, event, now).await;
                        if created.is_ok() {
                            self.lock().started(key.clone(), name, Instant::now());
                        }
                        created
                    }
                    other => other.map(drop),
                }
            }
        };
        if result.is_err() {
            self.lock().forget(&key);
        }
        result
    }

    async fn create(
        &self,
        api: &Api<K8sEvent>,
        name: &str,
        regarding: &ObjectReference,
        event: &Event,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let body = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some(ACTION.into()),
            reason: Some(event.reason.into()),
            note: Some(event.note.clone()),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &body).await.map(drop)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeriesCache> {
        // A panic while holding the lock leaves counts, not broken state.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Series in the cache.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("VerticeBackup".into()),
            namespace: Some("shop".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            ..Default::default()
        }
    }

    fn event(reason: &'static str, note: &str) -> Event {
        Event {
            warning: true,
            reason,
            note: note.into(),
        }
    }

    #[test]
    fn a_repeat_within_six_minutes_counts_the_first_event() {
        let mut cache = SeriesCache::default();
        let t0 = Instant::now();
        let key = Key::new(&reference("db"), &event("BackupFailed", "auth"));
        assert_eq!(
            cache.observe(key.clone(), t0, || "db.1".into()),
            Write::Create("db.1".into())
        );
        assert_eq!(
            cache.observe(key.clone(), t0 + Duration::from_secs(60), || "db.2".into()),
            Write::Count("db.1".into(), 2)
        );
        // The window runs from the last occurrence.
        assert_eq!(
            cache.observe(key.clone(), t0 + Duration::from_secs(400), || "db.3".into()),
            Write::Count("db.1".into(), 3)
        );
        assert_eq!(
            cache.observe(key, t0 + Duration::from_secs(800), || "db.4".into()),
            Write::Create("db.4".into())
        );
    }

    #[test]
    fn another_note_object_or_reason_is_another_event() {
        let mut cache = SeriesCache::default();
        let t0 = Instant::now();
        let first = Key::new(&reference("db"), &event("BackupFailed", "auth"));
        cache.observe(first, t0, || "a".into());
        for key in [
            Key::new(&reference("db"), &event("BackupFailed", "timeout")),
            Key::new(&reference("other"), &event("BackupFailed", "auth")),
            Key::new(&reference("db"), &event("BackupOverdue", "auth")),
        ] {
            assert_eq!(
                cache.observe(key, t0, || "new".into()),
                Write::Create("new".into())
            );
        }
        // A new resourceVersion of the same object is the same object.
        let mut newer = reference("db");
        newer.resource_version = Some("2".into());
        assert_eq!(
            cache.observe(Key::new(&newer, &event("BackupFailed", "auth")), t0, || "x"
                .into()),
            Write::Count("a".into(), 2)
        );
    }

    #[test]
    fn a_failed_write_starts_afresh_and_ended_series_are_swept() {
        let mut cache = SeriesCache::default();
        let t0 = Instant::now();
        let key = Key::new(&reference("db"), &event("BackupFailed", "auth"));
        cache.observe(key.clone(), t0, || "a".into());
        cache.forget(&key);
        assert_eq!(
            cache.observe(key.clone(), t0, || "b".into()),
            Write::Create("b".into())
        );
        // The Event expired on the server and was made anew.
        cache.started(key.clone(), "c".into(), t0);
        assert_eq!(
            cache.observe(key.clone(), t0, || "d".into()),
            Write::Count("c".into(), 2)
        );
        for i in 0..100 {
            let k = Key::new(&reference(&format!("db-{i}")), &event("X", ""));
            cache.observe(k, t0, || "n".into());
        }
        assert_eq!(cache.len(), 101);
        let later = Key::new(&reference("late"), &event("X", ""));
        cache.observe(later, t0 + SERIES_WINDOW, || "l".into());
        assert_eq!(cache.len(), 1, "only the newest series is left");
    }

    #[test]
    fn names_are_dns_subdomains_of_bounded_length() {
        let now = Timestamp::from_nanosecond(0x1234).expect("timestamp");
        assert_eq!(event_name(&reference("db"), "c", now), "db.1234");
        let long = "a".repeat(253);
        let name = event_name(&reference(&long), "c", now);
        assert!(name.len() <= 253, "{}", name.len());
        assert!(name.ends_with(".1234"));
        let unnamed = ObjectReference::default();
        assert_eq!(
            event_name(&unnamed, "vertice-controller", now),
            "vertice-controller.1234"
        );
    }
}
