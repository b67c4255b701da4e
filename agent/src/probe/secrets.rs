//! The Secrets a failover's check names, read for the runner under the
//! administrator's `--secret-reference-policy`. The runner may read every
//! Secret of a namespace, but the failover's author may not: a check that
//! names a Secret makes the runner send its value to the probe target she
//! chose. So a Secret is used only when its owner opted it in
//! ([`vertice_crds::tenancy::check_secret`]); the labels are checked at
//! every read, so removing the label takes effect at the next read.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use vertice_crds::common::SecretKeySelector;
use vertice_crds::failover::HealthCheck;
use vertice_crds::tenancy::{
    check_secret, SecretReferencePolicy, SecretRefused, ALLOW_REFERENCE_LABEL,
};

/// Why a Secret key gives no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretProblem {
    /// Its owner did not opt it in: the failover is not probed at all.
    Refused(SecretRefused),
    /// Missing, unreadable, or no such key: the replicas needing it fail.
    Unusable(String),
}

/// Every Secret key `check` names: header values, passwords, CA bundles.
pub fn referenced(check: &HealthCheck) -> Vec<SecretKeySelector> {
    let mut refs = Vec::new();
    if let Some(pg) = &check.postgres {
        refs.extend(pg.password_secret_ref.clone());
    }
    if let Some(r) = &check.redis {
        refs.extend(r.password_secret_ref.clone());
    }
    if let Some(h) = &check.http {
        refs.extend(h.headers.iter().filter_map(|h| h.value_from.clone()));
        refs.extend(h.ca_bundle_secret_ref.clone());
    }
    refs
}

/// The value of `key` in `secret` (of `namespace`), if the policy lets the
/// runner use it. Errors name the Secret and key, never a value.
pub fn value_of(
    policy: SecretReferencePolicy,
    namespace: &str,
    secret: &Secret,
    name: &str,
    key: &str,
) -> Result<String, SecretProblem> {
    check_secret(policy, namespace, name, secret.metadata.labels.as_ref())
        .map_err(SecretProblem::Refused)?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| SecretProblem::Unusable(format!("Secret {name} has no key {key}")))?;
    String::from_utf8(bytes.0.clone())
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|_| SecretProblem::Unusable(format!("Secret {name} key {key} is not UTF-8 text")))
}

/// The first refusal among what was read, if any.
pub fn refusal(
    read: &BTreeMap<SecretKeySelector, Result<String, SecretProblem>>,
) -> Option<&SecretRefused> {
    read.values().find_map(|r| match r {
        Err(SecretProblem::Refused(refused)) => Some(refused),
        _ => None,
    })
}

/// The refusal as a status reason: which Secret and the missing label,
/// short enough for a reason (the full text, with the command that fixes
/// it, goes to the log and the controller's condition).
pub fn refusal_reason(refused: &SecretRefused) -> String {
    super::bounded(&format!(
        "Secret {}/{} is not labelled {ALLOW_REFERENCE_LABEL}=true (or does not exist)",
        refused.namespace, refused.name
    ))
}

/// Reads every Secret `selectors` name (each Secret once) and judges each.
pub async fn read(
    api: &Api<Secret>,
    policy: SecretReferencePolicy,
    namespace: &str,
    selectors: &[SecretKeySelector],
) -> BTreeMap<SecretKeySelector, Result<String, SecretProblem>> {
    let names: BTreeSet<&str> = selectors.iter().map(|s| s.name.as_str()).collect();
    let mut fetched = BTreeMap::new();
    for name in names {
        fetched.insert(name, api.get(name).await);
    }
    selectors
        .iter()
        .map(|s| {
            let value = match fetched.get(s.name.as_str()) {
                Some(Ok(secret)) => value_of(policy, namespace, secret, &s.name, &s.key),
                // A missing Secret is refused in the same words as an
                // unlabelled one (as the controller does): the reason must
                // not tell a tenant which names exist.
                Some(Err(kube::Error::Api(status)))
                    if status.code == 404 && policy == SecretReferencePolicy::Labelled =>
                {
                    Err(SecretProblem::Refused(SecretRefused {
                        namespace: namespace.to_string(),
                        name: s.name.clone(),
                    }))
                }
                Some(Err(e)) => Err(SecretProblem::Unusable(format!(
                    "cannot read Secret {}: {}",
                    s.name,
                    short(e)
                ))),
                None => Err(SecretProblem::Unusable(format!(
                    "Secret {} was not read",
                    s.name
                ))),
            };
            (s.clone(), value)
        })
        .collect()
}

fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.reason, status.code),
        // The runner's own API server, not a tenant's target: its words
        // may stay.
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(labels: serde_json::Value) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "tok", "namespace": "team-a", "labels": labels},
            "data": {"token": "QmVhcmVyIHMzY3JldAo="}}))
        .expect("secret")
    }

    #[test]
    fn unlabelled_secrets_are_refused_by_default() {
        let unlabelled = secret(serde_json::json!({}));
        let got = value_of(
            SecretReferencePolicy::Labelled,
            "team-a",
            &unlabelled,
            "tok",
            "token",
        );
        let Err(SecretProblem::Refused(refused)) = got else {
            panic!("{got:?}");
        };
        assert_eq!(
            refusal_reason(&refused),
            "Secret team-a/tok is not labelled vertice.io/allow-reference=true (or does not exist)"
        );
        assert_eq!(
            value_of(
                SecretReferencePolicy::Any,
                "team-a",
                &unlabelled,
                "tok",
                "token"
            ),
            Ok("Bearer s3cret".into())
        );
    }

    #[test]
    fn labelled_secrets_give_their_keys() {
        let labelled = secret(serde_json::json!({ALLOW_REFERENCE_LABEL: "true"}));
        let policy = SecretReferencePolicy::Labelled;
        assert_eq!(
            value_of(policy, "team-a", &labelled, "tok", "token"),
            Ok("Bearer s3cret".into())
        );
        assert_eq!(
            value_of(policy, "team-a", &labelled, "tok", "nope"),
            Err(SecretProblem::Unusable("Secret tok has no key nope".into()))
        );
    }

    #[test]
    fn one_refusal_is_found_among_many() {
        let mut read = BTreeMap::new();
        read.insert(SecretKeySelector::new("a", "k"), Ok("v".to_string()));
        assert!(refusal(&read).is_none());
        let refused = SecretRefused {
            namespace: "team-a".into(),
            name: "b".into(),
        };
        read.insert(
            SecretKeySelector::new("b", "k"),
            Err(SecretProblem::Refused(refused.clone())),
        );
        assert_eq!(refusal(&read), Some(&refused));
    }

    #[test]
    fn every_secret_a_check_refers_to_is_read() {
        let check: HealthCheck = serde_json::from_value(serde_json::json!({"http": {
            "headers": [{"name": "a", "valueFrom": {"name": "s", "key": "t"}}, {"name": "b", "value": "v"}],
            "caBundleSecretRef": {"name": "ca", "key": "ca.crt"}}})).expect("check");
        assert_eq!(
            referenced(&check),
            vec![
                SecretKeySelector::new("s", "t"),
                SecretKeySelector::new("ca", "ca.crt")
            ]
        );
        let pg: HealthCheck = serde_json::from_value(serde_json::json!({"postgres": {
            "passwordSecretRef": {"name": "pg", "key": "password"}}}))
        .expect("check");
        assert_eq!(
            referenced(&pg),
            vec![SecretKeySelector::new("pg", "password")]
        );
    }
}
