//! Whether the Secrets a VerticeBackup or VerticeFailover names may be used
//! (`vertice_crds::tenancy::check_secret`): the controller reads only their
//! metadata (never the data, so a refused Secret's contents never reach
//! this process), keeps what it read for [`TTL`], and decides without I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use vertice_crds::tenancy::{check_secret, SecretReferencePolicy, SecretRefused};

use crate::error::{kube_err, Error};

/// How long a Secret's labels are trusted: a label added by the Secret's
/// owner (or removed) takes effect within this, and a thousand backups
/// naming the same few Secrets cost a few GETs a minute, not thousands.
pub const TTL: Duration = Duration::from_secs(30);

/// What a metadata GET of one Secret found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretMeta {
    /// The Secret exists with these labels.
    Labels(BTreeMap<String, String>),
    /// No such Secret: refused like an unlabelled one. A CronJob written
    /// while the name was free would mount whatever Secret of that name is
    /// created later, labelled or not.
    NotFound,
    /// The controller may not read Secrets there (chart
    /// `rbac.secretNamespaces`): it cannot tell whether the Secret is
    /// opted in, so it is not used.
    Forbidden,
}

/// The Secrets of one namespace, by name, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsSeen(pub BTreeMap<String, SecretMeta>);

/// One Secret a resource names, and the field that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUse {
    pub field: String,
    pub name: String,
}

/// Why a named Secret may not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretProblem {
    /// Not opted in (the shared rule and its words).
    Refused(SecretRefused),
    /// The controller's RBAC does not let it see the Secret's labels.
    Unreadable { namespace: String, name: String },
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(refused) => refused.fmt(f),
            Self::Unreadable { namespace, name } => write!(
                f,
                "Secret {namespace}/{name}: the controller may not read Secrets in namespace \
                 {namespace} (chart rbac.secretNamespaces), so it cannot see whether the Secret \
                 is opted in; add the namespace there or use no Secret"
            ),
        }
    }
}

/// Whether `name` may be used under `policy`. A name the reconciler did not
/// look up is refused: a forgotten lookup must not let a Secret through.
pub fn check(
    policy: SecretReferencePolicy,
    namespace: &str,
    name: &str,
    seen: &SecretsSeen,
) -> Result<(), SecretProblem> {
    if policy == SecretReferencePolicy::Any {
        return Ok(());
    }
    match seen.0.get(name) {
        Some(SecretMeta::NotFound) => {
            check_secret(policy, namespace, name, None).map_err(SecretProblem::Refused)
        }
        Some(SecretMeta::Labels(labels)) => {
            check_secret(policy, namespace, name, Some(labels)).map_err(SecretProblem::Refused)
        }
        Some(SecretMeta::Forbidden) => Err(SecretProblem::Unreadable {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }),
        None => check_secret(policy, namespace, name, None).map_err(SecretProblem::Refused),
    }
}

/// Secret metadata read within the last [`TTL`], per namespace and name.
#[derive(Default)]
pub struct SecretLabelCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_name: HashMap<(String, String), (Instant, SecretMeta)>,
    swept: Option<Instant>,
}

impl SecretLabelCache {
    /// The metadata of each Secret `uses` names in `namespace`. Under the policy
    /// `any` nothing is read (labels do not matter). A failed read other
    /// than 404 / 403 is the reconcile's error: nothing is written with a
    /// Secret whose labels are unknown.
    pub async fn read(
        &self,
        client: &Client,
        policy: SecretReferencePolicy,
        namespace: &str,
        uses: &[SecretUse],
    ) -> Result<SecretsSeen, Error> {
        let mut seen = SecretsSeen::default();
        if policy == SecretReferencePolicy::Any {
            return Ok(seen);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for name in uses.iter().map(|u| u.name.as_str()) {
            if seen.0.contains_key(name) {
                continue;
            }
            let meta = match self.cached(namespace, name) {
                Some(meta) => meta,
                None => {
                    let meta = match api.get_metadata_opt(name).await {
                        Ok(Some(found)) => {
                            SecretMeta::Labels(found.metadata.labels.unwrap_or_default())
                        }
                        Ok(None) => SecretMeta::NotFound,
                        Err(kube::Error::Api(status)) if status.code == 403 => {
                            SecretMeta::Forbidden
                        }
                        Err(e) => {
                            return Err(kube_err(format!(
                                "read the labels of Secret {namespace}/{name}"
                            ))(e))
                        }
                    };
                    self.keep(namespace, name, meta.clone());
                    meta
                }
            };
            seen.0.insert(name.to_string(), meta);
        }
        Ok(seen)
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<SecretMeta> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .by_name
            .get(&(namespace.to_string(), name.to_string()))
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, meta)| meta.clone())
    }

    fn keep(&self, namespace: &str, name: &str, meta: SecretMeta) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        // Entries of Secrets no resource names any more go at the next
        // sweep, so the map holds at most one TTL's worth of names.
        if entries.swept.is_none_or(|at| now.duration_since(at) >= TTL) {
            entries.by_name.retain(|_, (at, _)| at.elapsed() < TTL);
            entries.swept = Some(now);
        }
        entries
            .by_name
            .insert((namespace.to_string(), name.to_string()), (now, meta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vertice_crds::tenancy::ALLOW_REFERENCE_LABEL;

    fn seen(entries: &[(&str, SecretMeta)]) -> SecretsSeen {
        SecretsSeen(
            entries
                .iter()
                .map(|(n, m)| (n.to_string(), m.clone()))
                .collect(),
        )
    }

    fn labelled(value: &str) -> SecretMeta {
        SecretMeta::Labels(BTreeMap::from([(
            ALLOW_REFERENCE_LABEL.to_string(),
            value.to_string(),
        )]))
    }

    #[test]
    fn only_opted_in_secrets_pass() {
        let policy = SecretReferencePolicy::Labelled;
        let s = seen(&[
            ("ok", labelled("true")),
            ("no", labelled("false")),
            ("bare", SecretMeta::Labels(BTreeMap::new())),
            ("gone", SecretMeta::NotFound),
            ("hidden", SecretMeta::Forbidden),
        ]);
        assert_eq!(check(policy, "a", "ok", &s), Ok(()));
        // A missing Secret is refused too, in the same words: a CronJob
        // must not mount whatever is created under that name later.
        for refused in ["no", "bare", "gone", "never-looked-up"] {
            let e = check(policy, "a", refused, &s).expect_err(refused);
            assert!(matches!(e, SecretProblem::Refused(_)), "{refused}: {e:?}");
            assert!(e.to_string().contains(&format!("Secret a/{refused}")));
        }
        let e = check(policy, "a", "hidden", &s).expect_err("forbidden");
        assert!(
            e.to_string().contains("rbac.secretNamespaces"),
            "the refusal names what would fix it: {e}"
        );
    }

    #[test]
    fn the_policy_any_needs_no_labels() {
        let s = SecretsSeen::default();
        assert_eq!(check(SecretReferencePolicy::Any, "a", "x", &s), Ok(()));
    }
}
