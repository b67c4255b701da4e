//! Which topics and consumer groups a backup takes, from `--topics`,
//! `--topic-regex`, `--include-internal` and `--groups`: pure, so every
//! rule is tested without a broker.

use regex::Regex;

use crate::error::{Error, Result};

/// The topics and groups a run selects.
#[derive(Debug, Clone)]
pub struct Selection {
    /// `--topics`: exact names, each of which must exist.
    pub topics: Vec<String>,
    /// `--topic-regex`: topics whose whole name matches.
    pub topic_regex: Option<Regex>,
    /// Internal topics (`__consumer_offsets`, `__transaction_state`, …)
    /// are left out unless named or included.
    pub include_internal: bool,
    /// `--groups`: groups whose whole id matches; `None`: every group.
    pub groups: Option<Regex>,
    /// Whether groups' offsets are read at all (a drill reading its
    /// scratch topics back takes none).
    pub carry_groups: bool,
}

/// Compiles a user's pattern so that it must match the whole name.
pub fn whole_match(pattern: &str, flag: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        Error::usage(format!(
            "{flag} {pattern:?} is not a regular expression: {e}"
        ))
    })
}

fn internal(topic: &str) -> bool {
    topic.starts_with("__")
}

impl Selection {
    /// The selected topics among those the cluster has, sorted.
    pub fn topics<'a>(&self, available: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>> {
        let available: Vec<&str> = available.into_iter().collect();
        for named in &self.topics {
            if !available.contains(&named.as_str()) {
                return Err(Error::usage(format!(
                    "--topics: the cluster has no topic {named:?}"
                )));
            }
        }
        let everything = self.topics.is_empty() && self.topic_regex.is_none();
        let mut chosen: Vec<String> = available
            .iter()
            .filter(|t| {
                self.topics.iter().any(|n| n == *t)
                    || (!internal(t) || self.include_internal)
                        && (everything || self.topic_regex.as_ref().is_some_and(|r| r.is_match(t)))
            })
            .map(|t| t.to_string())
            .collect();
        chosen.sort();
        chosen.dedup();
        if chosen.is_empty() {
            return Err(Error::usage(
                "no topic to back up: --topics and --topic-regex select none of the cluster's topics",
            ));
        }
        Ok(chosen)
    }

    pub fn takes_group(&self, group: &str) -> bool {
        self.carry_groups && self.groups.as_ref().is_none_or(|r| r.is_match(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(topics: &[&str], regex: Option<&str>) -> Selection {
        Selection {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            topic_regex: regex.map(|r| whole_match(r, "--topic-regex").expect("regex")),
            include_internal: false,
            groups: None,
            carry_groups: true,
        }
    }

    const CLUSTER: [&str; 5] = [
        "orders",
        "payments",
        "orders-dlq",
        "__consumer_offsets",
        "logs",
    ];

    #[test]
    fn everything_but_internal_topics_by_default() {
        assert_eq!(
            selection(&[], None).topics(CLUSTER).expect("all"),
            ["logs", "orders", "orders-dlq", "payments"]
        );
        let mut with_internal = selection(&[], None);
        with_internal.include_internal = true;
        assert!(with_internal
            .topics(CLUSTER)
            .expect("all")
            .contains(&"__consumer_offsets".to_string()));
    }

    #[test]
    fn names_and_patterns_add_up_and_patterns_match_whole_names() {
        assert_eq!(
            selection(&["payments"], Some("orders"))
                .topics(CLUSTER)
                .expect("both"),
            ["orders", "payments"]
        );
        assert_eq!(
            selection(&[], Some("orders.*"))
                .topics(CLUSTER)
                .expect("re"),
            ["orders", "orders-dlq"]
        );
        assert_eq!(
            selection(&["__consumer_offsets"], None)
                .topics(CLUSTER)
                .expect("named"),
            ["__consumer_offsets"]
        );
    }

    #[test]
    fn a_missing_topic_or_an_empty_choice_names_the_flag() {
        let err = selection(&["order"], None)
            .topics(CLUSTER)
            .expect_err("missing");
        assert!(err.to_string().contains("--topics") && err.to_string().contains("\"order\""));
        assert_eq!(err.exit_code(), 2);
        let err = selection(&[], Some("nothing"))
            .topics(CLUSTER)
            .expect_err("none");
        assert!(err.to_string().contains("--topic-regex"), "{err}");
        assert!(whole_match("(", "--groups")
            .expect_err("bad")
            .to_string()
            .contains("--groups"));
    }

    #[test]
    fn groups_match_whole_ids() {
        let mut s = selection(&[], None);
        assert!(s.takes_group("anything"));
        s.groups = Some(whole_match("billing-.*", "--groups").expect("re"));
        assert!(s.takes_group("billing-eu") && !s.takes_group("old-billing-eu"));
    }
}
