//! The rules that keep a namespace tenant inside their own rights, shared by
//! the controller and the probe runner so both refuse with the same words.
//!
//! A tenant with `vertice-edit` in a namespace may create Vertice resources
//! there, but may not read its Secrets. A resource that names a Secret makes
//! Vertice read it and send it somewhere the resource chooses (a probe
//! address, a Prometheus URL, a store endpoint). So Vertice uses a Secret
//! only when someone who may write that Secret has opted it in with the
//! label [`ALLOW_REFERENCE_LABEL`]`=true` — adding a label needs write
//! access to the Secret, which the tenant does not have.

use std::collections::BTreeMap;
use std::fmt;

/// Label a Secret's owner sets to let Vertice resources in its namespace use it.
pub const ALLOW_REFERENCE_LABEL: &str = "vertice.io/allow-reference";

/// Condition reason and Event reason when a Secret is refused.
pub const SECRET_NOT_ALLOWED: &str = "SecretNotAllowed";

/// Condition reason and Event reason when a reference leaves the namespace
/// without the administrator's allowance.
pub const CROSS_NAMESPACE_REFUSED: &str = "CrossNamespaceRefused";

/// Condition reason and Event reason when the pod settings name an image,
/// ServiceAccount or priority class the administrator did not allow.
pub const NOT_ALLOWED_BY_ADMIN: &str = "NotAllowedByAdmin";

/// Which Secrets a Vertice resource may name, chosen by the administrator
/// (`--secret-reference-policy`, chart `tenancy.secretReferencePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretReferencePolicy {
    /// Only Secrets labelled `vertice.io/allow-reference=true` (the default).
    #[default]
    Labelled,
    /// Any Secret of the resource's namespace: for clusters where everyone
    /// who may create Vertice resources may also read the namespace's Secrets.
    Any,
}

impl SecretReferencePolicy {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "labelled" | "labeled" => Ok(Self::Labelled),
            "any" => Ok(Self::Any),
            other => Err(format!(
                "unknown secret reference policy {other:?}: use labelled (the default) or any"
            )),
        }
    }
}

/// A Secret Vertice must not use, with the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRefused {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for SecretRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Secret {ns}/{name} is not labelled {ALLOW_REFERENCE_LABEL}=true (or does not exist): \
             Vertice uses only Secrets their owners opted in (someone who may edit the Secret \
             runs `kubectl label secret {name} -n {ns} {ALLOW_REFERENCE_LABEL}=true`)",
            ns = self.namespace,
            name = self.name,
        )
    }
}

impl std::error::Error for SecretRefused {}

/// Whether a Secret with these labels may be used under `policy`.
pub fn check_secret(
    policy: SecretReferencePolicy,
    namespace: &str,
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), SecretRefused> {
    let opted_in = labels
        .and_then(|l| l.get(ALLOW_REFERENCE_LABEL))
        .is_some_and(|v| v == "true");
    if policy == SecretReferencePolicy::Any || opted_in {
        Ok(())
    } else {
        Err(SecretRefused {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// Cross-namespace references the administrator allowed: pairs `from:to`
/// (`--allow-cross-namespace team-a:team-b`), none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossNamespaceAllowance {
    pairs: Vec<(String, String)>,
}

impl CrossNamespaceAllowance {
    /// Parses `from:to` pairs separated by commas or whitespace.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for item in text.split([',', ' ', '\n']).filter(|s| !s.is_empty()) {
            let (from, to) = item.split_once(':').ok_or_else(|| {
                format!("{item:?} is not a from:to pair of namespaces (e.g. team-a:team-b)")
            })?;
            if from.is_empty() || to.is_empty() {
                return Err(format!("{item:?}: both namespaces must be named"));
            }
            pairs.push((from.to_string(), to.to_string()));
        }
        Ok(Self { pairs })
    }

    /// A resource in `from` may refer to an object in `to`.
    pub fn allows(&self, from: &str, to: &str) -> bool {
        from == to || self.pairs.iter().any(|(f, t)| f == from && t == to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_labelled_secrets_pass_by_default() {
        let policy = SecretReferencePolicy::default();
        assert!(check_secret(policy, "a", "s", None).is_err());
        assert!(check_secret(policy, "a", "s", Some(&labels(&[]))).is_err());
        assert!(check_secret(
            policy,
            "a",
            "s",
            Some(&labels(&[(ALLOW_REFERENCE_LABEL, "false")]))
        )
        .is_err());
        assert!(check_secret(
            policy,
            "a",
            "s",
            Some(&labels(&[(ALLOW_REFERENCE_LABEL, "true")]))
        )
        .is_ok());
        assert!(check_secret(SecretReferencePolicy::Any, "a", "s", None).is_ok());
    }

    #[test]
    fn refusal_names_the_secret_and_the_rule() {
        let e = check_secret(SecretReferencePolicy::Labelled, "team-a", "db", None)
            .expect_err("unlabelled");
        let text = e.to_string();
        assert!(text.contains("Secret team-a/db"), "{text}");
        assert!(text.contains("vertice.io/allow-reference=true"), "{text}");
    }

    #[test]
    fn policy_parses_its_two_names() {
        assert_eq!(
            SecretReferencePolicy::parse("labelled"),
            Ok(SecretReferencePolicy::Labelled)
        );
        assert_eq!(
            SecretReferencePolicy::parse("any"),
            Ok(SecretReferencePolicy::Any)
        );
        assert!(SecretReferencePolicy::parse("all").is_err());
    }

    #[test]
    fn cross_namespace_only_where_allowed() {
        let none = CrossNamespaceAllowance::default();
        assert!(none.allows("a", "a"));
        assert!(!none.allows("a", "b"));
        let some = CrossNamespaceAllowance::parse("a:b, c:d").expect("pairs");
        assert!(some.allows("a", "b"));
        assert!(!some.allows("b", "a"));
        assert!(some.allows("c", "d"));
        assert!(CrossNamespaceAllowance::parse("a-b").is_err());
        assert!(CrossNamespaceAllowance::parse(":b").is_err());
    }
}
