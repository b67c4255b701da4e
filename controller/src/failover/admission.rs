//! What a VerticeFailover may make the controller touch on its author's
//! behalf: only a VirtualService of its own namespace (unless the
//! administrator allowed the pair), and only Secrets their owners opted in.
//! Pure; the reconciler checks the namespace before any read of the
//! VirtualService, and the Secrets' labels before the route is read.

use std::fmt;

use vertice_crds::failover::{FailoverPhase, VerticeFailoverSpec};
use vertice_crds::tenancy::{CrossNamespaceAllowance, SecretReferencePolicy};

use crate::secret_labels::{self, SecretProblem, SecretUse, SecretsSeen};

/// Why the controller neither reads nor steers a failover's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `spec.virtualService.namespace` names another namespace, and the
    /// administrator did not allow `from:to`.
    CrossNamespace { from: String, to: String },
    /// The check names a Secret that is not opted in.
    Secret {
        field: String,
        problem: SecretProblem,
    },
}

impl Refusal {
    /// The phase (and Ready reason, and Event reason) it shows.
    pub fn phase(&self) -> FailoverPhase {
        match self {
            Self::CrossNamespace { .. } => FailoverPhase::CrossNamespaceRefused,
            Self::Secret { .. } => FailoverPhase::SecretNotAllowed,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Says nothing of the other namespace: not whether the
            // VirtualService exists, since it is never read.
            Self::CrossNamespace { from, to } => write!(
                f,
                "spec.virtualService.namespace {to}: a VerticeFailover may steer only \
                 VirtualServices of its own namespace ({from}) unless the administrator \
                 allows {from}:{to} (--allow-cross-namespace)"
            ),
            Self::Secret { field, problem } => write!(f, "{field}: {problem}"),
        }
    }
}

/// The namespace of the VirtualService the failover steers.
pub fn virtual_service_namespace<'a>(namespace: &'a str, spec: &'a VerticeFailoverSpec) -> &'a str {
    spec.virtual_service
        .namespace
        .as_deref()
        .unwrap_or(namespace)
}

/// A VirtualService of another namespace only with the administrator's
/// allowance (`--allow-cross-namespace from:to`).
pub fn check_namespace(
    namespace: &str,
    spec: &VerticeFailoverSpec,
    allowance: &CrossNamespaceAllowance,
) -> Result<(), Refusal> {
    let to = virtual_service_namespace(namespace, spec);
    if allowance.allows(namespace, to) {
        Ok(())
    } else {
        Err(Refusal::CrossNamespace {
            from: namespace.to_string(),
            to: to.to_string(),
        })
    }
}

/// Every Secret the check names, with its field path.
pub fn secret_uses(spec: &VerticeFailoverSpec) -> Vec<SecretUse> {
    let check = &spec.check;
    let mut uses = Vec::new();
    let mut add = |field: String, name: &str| {
        uses.push(SecretUse {
            field,
            name: name.to_string(),
        })
    };
    if let Some(s) = check
        .postgres
        .as_ref()
        .and_then(|p| p.password_secret_ref.as_ref())
    {
        add("spec.check.postgres.passwordSecretRef".into(), &s.name);
    }
    if let Some(s) = check
        .redis
        .as_ref()
        .and_then(|r| r.password_secret_ref.as_ref())
    {
        add("spec.check.redis.passwordSecretRef".into(), &s.name);
    }
    if let Some(http) = &check.http {
        for (j, s) in http
            .headers
            .iter()
            .enumerate()
            .filter_map(|(j, h)| Some((j, h.value_from.as_ref()?)))
        {
            add(format!("spec.check.http.headers[{j}].valueFrom"), &s.name);
        }
        if let Some(s) = &http.ca_bundle_secret_ref {
            add("spec.check.http.caBundleSecretRef".into(), &s.name);
        }
    }
    uses
}

/// Every Secret the check names must be opted in (or missing).
pub fn check_secrets(
    namespace: &str,
    spec: &VerticeFailoverSpec,
    policy: SecretReferencePolicy,
    seen: &SecretsSeen,
) -> Result<(), Refusal> {
    for SecretUse { field, name } in secret_uses(spec) {
        secret_labels::check(policy, namespace, &name, seen)
            .map_err(|problem| Refusal::Secret { field, problem })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use vertice_crds::tenancy::ALLOW_REFERENCE_LABEL;

    use super::*;
    use crate::secret_labels::SecretMeta;

    fn spec(vs: serde_json::Value, check: serde_json::Value) -> VerticeFailoverSpec {
        serde_json::from_value(json!({
            "virtualService": vs,
            "replicas": [{"name": "a", "host": "a"}, {"name": "b", "host": "b"}],
            "check": check,
        }))
        .expect("spec")
    }

    #[test]
    fn another_namespace_needs_the_administrators_pair() {
        let own = spec(json!({"name": "db"}), json!({"tcp": {}, "port": 1}));
        let none = CrossNamespaceAllowance::default();
        assert_eq!(check_namespace("team-a", &own, &none), Ok(()));
        let same = spec(
            json!({"name": "db", "namespace": "team-a"}),
            json!({"tcp": {}, "port": 1}),
        );
        assert_eq!(check_namespace("team-a", &same, &none), Ok(()));
        let other = spec(
            json!({"name": "db", "namespace": "team-b"}),
            json!({"tcp": {}, "port": 1}),
        );
        let refusal = check_namespace("team-a", &other, &none).expect_err("team-b");
        assert_eq!(refusal.phase(), FailoverPhase::CrossNamespaceRefused);
        assert_eq!(
            refusal.to_string(),
            "spec.virtualService.namespace team-b: a VerticeFailover may steer only VirtualServices \
             of its own namespace (team-a) unless the administrator allows team-a:team-b (--allow-cross-namespace)"
        );
        let allowed = CrossNamespaceAllowance::parse("team-a:team-b").expect("pair");
        assert_eq!(check_namespace("team-a", &other, &allowed), Ok(()));
        // The pair has a direction.
        let back = spec(
            json!({"name": "db", "namespace": "team-a"}),
            json!({"tcp": {}, "port": 1}),
        );
        assert!(check_namespace("team-b", &back, &allowed).is_err());
    }

    #[test]
    fn every_secret_of_a_check_is_named_and_checked() {
        let sel = |n: &str| json!({"name": n, "key": "k"});
        let http = spec(
            json!({"name": "db"}),
            json!({"http": {"headers": [{"name": "X", "value": "v"}, {"name": "Authorization", "valueFrom": sel("token")}],
                            "caBundleSecretRef": sel("ca")}}),
        );
        let fields: Vec<(String, String)> = secret_uses(&http)
            .into_iter()
            .map(|u| (u.field, u.name))
            .collect();
        assert_eq!(
            fields,
            [
                (
                    "spec.check.http.headers[1].valueFrom".to_string(),
                    "token".to_string()
                ),
                (
                    "spec.check.http.caBundleSecretRef".to_string(),
                    "ca".to_string()
                )
            ]
        );
        let pg = spec(
            json!({"name": "db"}),
            json!({"postgres": {"passwordSecretRef": sel("pg")}}),
        );
        assert_eq!(
            secret_uses(&pg)[0].field,
            "spec.check.postgres.passwordSecretRef"
        );
        let redis = spec(
            json!({"name": "db"}),
            json!({"redis": {"passwordSecretRef": sel("r")}}),
        );
        assert_eq!(
            secret_uses(&redis)[0].field,
            "spec.check.redis.passwordSecretRef"
        );

        let policy = SecretReferencePolicy::Labelled;
        let opted = |names: &[&str]| {
            SecretsSeen(
                names
                    .iter()
                    .map(|n| {
                        let l = BTreeMap::from([(
                            ALLOW_REFERENCE_LABEL.to_string(),
                            "true".to_string(),
                        )]);
                        (n.to_string(), SecretMeta::Labels(l))
                    })
                    .collect(),
            )
        };
        assert_eq!(
            check_secrets("team-a", &http, policy, &opted(&["token", "ca"])),
            Ok(())
        );
        let refusal = check_secrets("team-a", &http, policy, &opted(&["ca"])).expect_err("token");
        assert_eq!(refusal.phase(), FailoverPhase::SecretNotAllowed);
        assert!(
            refusal.to_string().starts_with(
                "spec.check.http.headers[1].valueFrom: Secret team-a/token is not labelled"
            ),
            "{refusal}"
        );
        assert_eq!(
            check_secrets(
                "team-a",
                &http,
                SecretReferencePolicy::Any,
                &SecretsSeen::default()
            ),
            Ok(())
        );
    }
}
