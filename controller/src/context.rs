//! What every reconciler shares: the client, the event recorder, whether
//! this replica leads, and the metrics; plus the two writes every
//! reconciler makes the same way (status by server-side apply, Events),
//! both only while this replica may write (`leader::Leadership`).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use crate::error::{kube_err, Error};
pub use crate::events::Event;
use crate::events::EventRecorder;
use crate::metrics::Metrics;

/// The field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "vertice-controller";
/// Event notes are cut here (the API server allows 1 KiB).
const MAX_NOTE: usize = 1024;

#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub recorder: EventRecorder,
    /// Whether this replica holds the leader lease and may write now.
    pub leading: crate::leader::Leadership,
    pub metrics: Metrics,
    /// The administrator's limits on what a tenant's resources may cause.
    pub tenancy: std::sync::Arc<crate::config::TenancyArgs>,
}

impl Shared {
    pub fn is_leading(&self) -> bool {
        self.leading.is_leading()
    }

    /// Whether a write sent now lands while this replica may write.
    pub fn may_write(&self) -> bool {
        self.leading.may_write()
    }

    /// Applies `status` (a JSON object) to the status subresource with our
    /// field manager. `kind` and `api_version` make it a valid apply body.
    /// Refused (an error `leader::refused` recognizes) when this replica
    /// may not write, and cut off at the end of its validity.
    pub async fn apply_status<K>(
        &self,
        api: &Api<K>,
        name: &str,
        api_version: &str,
        kind: &str,
        status: &impl serde::Serialize,
    ) -> Result<(), Error>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        let patch = serde_json::json!({"apiVersion": api_version, "kind": kind, "status": status});
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.leading
            .write(api.patch_status(name, &params, &Patch::Apply(&patch)))
            .await
            .map_err(kube_err(format!("apply {kind} status")))?;
        Ok(())
    }

    /// What every controller does with a failed reconcile: counts it by
    /// category, logs it, records a Warning Event with the category's
    /// reason, and retries after `retry`. A reconcile cut short because
    /// this replica stopped leading is no failure: nothing is recorded.
    pub fn failed_reconcile<K>(
        &self,
        controller: &str,
        object: &K,
        error: &Error,
        retry: std::time::Duration,
    ) -> kube::runtime::controller::Action
    where
        K: kube::Resource<DynamicType = ()>,
    {
        use kube::runtime::controller::Action;
        use kube::ResourceExt;
        let (namespace, name) = (object.namespace(), object.name_any());
        if crate::leader::refused(&error.source) {
            tracing::debug!(?namespace, %name, controller, "no longer leading; reconcile ended");
            return Action::requeue(std::time::Duration::from_secs(15));
        }
        self.metrics
            .reconcile_errors
            .with_label_values(&[controller, error.category.as_str()])
            .inc();
        tracing::warn!(?namespace, %name, controller, category = error.category.as_str(), error = %error, "reconcile failed");
        let event = Event::warning(error.category.event_reason(), error.to_string());
        let reference = object.object_ref(&());
        let shared = self.clone();
        tokio::spawn(async move { shared.publish(&reference, &event).await });
        Action::requeue(retry)
    }

    /// Records an Event; a failure is logged, never returned: an event that
    /// cannot be written must not undo a reconcile. Only while this replica
    /// may write: a deposed leader says nothing.
    pub async fn publish(&self, reference: &ObjectReference, event: &Event) {
        let event = Event {
            note: truncate(&event.note, MAX_NOTE),
            ..event.clone()
        };
        let Some(published) = self
            .leading
            .bounded(self.recorder.publish(reference, &event))
            .await
        else {
            tracing::debug!(object = ?reference.name, reason = event.reason, "not leading; event not recorded");
            return;
        };
        if let Err(e) = published {
            let error = crate::error::short(&e);
            tracing::warn!(object = ?reference.name, namespace = ?reference.namespace, reason = event.reason, %error, "could not record event");
        }
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let cut = (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
