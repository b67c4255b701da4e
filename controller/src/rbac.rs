//! RBAC rules written out from a permission list (`permissions::REQUIRED`,
//! the probe runner's `PERMISSIONS`), for the Helm chart's generated
//! `templates/_rbac-rules.tpl`. One rule per API group and set of verbs, in
//! the order the list first names them, so a reader sees the list's shape.

/// `(API group, resource, verb)`, as in `permissions::REQUIRED`.
pub type Permission<'a> = (&'a str, &'a str, &'a str);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub api_group: String,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

/// Groups `permissions` into rules: resources with the same group and the
/// same verbs share one rule.
pub fn rules(permissions: &[Permission<'_>]) -> Vec<Rule> {
    // (group, resource) → verbs, in first-seen order.
    let mut by_resource: Vec<((&str, &str), Vec<String>)> = Vec::new();
    for &(group, resource, verb) in permissions {
        match by_resource
            .iter_mut()
            .find(|(k, _)| *k == (group, resource))
        {
            Some((_, verbs)) => {
                if !verbs.iter().any(|v| v == verb) {
                    verbs.push(verb.to_string());
                }
            }
            None => by_resource.push(((group, resource), vec![verb.to_string()])),
        }
    }
    let mut out: Vec<Rule> = Vec::new();
    for ((group, resource), verbs) in by_resource {
        match out
            .iter_mut()
            .find(|r| r.api_group == group && r.verbs == verbs)
        {
            Some(rule) => rule.resources.push(resource.to_string()),
            None => out.push(Rule {
                api_group: group.to_string(),
                resources: vec![resource.to_string()],
                verbs,
            }),
        }
    }
    out
}

/// The rules as a YAML list, each line indented by `indent` spaces.
pub fn to_yaml(rules: &[Rule], indent: usize) -> String {
    let pad = " ".repeat(indent);
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    rules
        .iter()
        .map(|r| {
            format!(
                "{pad}- apiGroups: [\"{}\"]\n{pad}  resources: [{}]\n{pad}  verbs: [{}]\n",
                r.api_group,
                list(&r.resources),
                list(&r.verbs)
            )
        })
        .collect()
}

/// Splits the controller's list: leases are granted only in its own
/// namespace (a Role), everything else cluster-wide.
pub fn split_leases<'a>(
    permissions: &[Permission<'a>],
) -> (Vec<Permission<'a>>, Vec<Permission<'a>>) {
    permissions.iter().partition(|(group, resource, _)| {
        !(*group == "coordination.k8s.io" && *resource == "leases")
    })
}

/// Splits off the Secret reads: the chart grants them cluster-wide, or only
/// in the namespaces `rbac.secretNamespaces` lists (a Role in each).
pub fn split_secrets<'a>(
    permissions: &[Permission<'a>],
) -> (Vec<Permission<'a>>, Vec<Permission<'a>>) {
    permissions
        .iter()
        .partition(|(group, resource, _)| !(group.is_empty() && *resource == "secrets"))
}

/// The chart's `templates/_rbac-rules.tpl`: one named template per role.
pub fn helm_rules_template(
    controller: &[Permission<'_>],
    probe_runner: &[Permission<'_>],
) -> String {
    let (cluster, leases) = split_leases(controller);
    let (cluster, controller_secrets) = split_secrets(&cluster);
    let (probe, probe_secrets) = split_secrets(probe_runner);
    let define = |name: &str, perms: &[Permission<'_>]| {
        format!(
            "{{{{- define \"{name}\" }}}}\n{}{{{{- end }}}}\n",
            to_yaml(&rules(perms), 0)
        )
    };
    format!(
        "{{{{- /*\nGenerated from controller/src/permissions.rs and\nvertice_agent::probe::serve::PERMISSIONS; do not edit. Regenerate with\n  VERTICE_REGENERATE=1 cargo test -p vertice-controller --test helm_chart\n*/}}}}\n{}{}{}{}{}",
        define("vertice.controllerClusterRules", &cluster),
        define("vertice.controllerSecretRules", &controller_secrets),
        define("vertice.controllerLeaseRules", &leases),
        define("vertice.probeRules", &probe),
        define("vertice.probeSecretRules", &probe_secrets)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_with_the_same_verbs_share_a_rule_in_list_order() {
        let perms = [
            ("apps", "deployments", "list"),
            ("apps", "deployments", "watch"),
            ("", "pods", "list"),
            ("apps", "statefulsets", "list"),
            ("apps", "statefulsets", "watch"),
            ("apps", "deployments/scale", "patch"),
            ("", "pods", "watch"),
            ("", "pods", "list"),
        ];
        let rules = rules(&perms);
        assert_eq!(
            to_yaml(&rules, 2),
            concat!(
                "  - apiGroups: [\"apps\"]\n    resources: [\"deployments\", \"statefulsets\"]\n    verbs: [\"list\", \"watch\"]\n",
                "  - apiGroups: [\"\"]\n    resources: [\"pods\"]\n    verbs: [\"list\", \"watch\"]\n",
                "  - apiGroups: [\"apps\"]\n    resources: [\"deployments/scale\"]\n    verbs: [\"patch\"]\n",
            )
        );
    }

    #[test]
    fn leases_go_to_the_namespaced_role() {
        let (cluster, leases) = split_leases(crate::permissions::REQUIRED);
        assert!(leases.iter().all(|p| p.1 == "leases") && !leases.is_empty());
        assert!(cluster.iter().all(|p| p.1 != "leases"));
        assert_eq!(
            cluster.len() + leases.len(),
            crate::permissions::REQUIRED.len()
        );
    }
}
