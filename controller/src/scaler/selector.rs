//! Label selectors in their string form (`app=web,tier in (a,b),!canary`),
//! as `/scale` reports them, matched against a pod's labels.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// Splits on commas outside parentheses.
fn terms(text: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn set(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let bad = |t: &str| format!("label selector {text:?}: cannot read {t:?}");
        let mut out = Vec::new();
        for term in terms(text) {
            let requirement = if let Some(key) = term.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(rest).ok_or_else(|| bad(term))?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                Requirement::In(k.trim().into(), set(rest).ok_or_else(|| bad(term))?)
            } else if !term.contains(' ') && !term.contains('(') {
                Requirement::Exists(term.to_string())
            } else {
                return Err(bad(term));
            };
            out.push(requirement);
        }
        Ok(Selector(out))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
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
    fn selectors_match_as_the_api_server_does() {
        let s = Selector::parse(
            "app=web,tier in (front, edge),!canary,zone,env!=dev,track notin (beta)",
        )
        .expect("parse");
        assert!(s.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("zone", "a"),
            ("env", "prod")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("zone", "a"),
            ("canary", "1")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "back"), ("zone", "a")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("zone", "a"),
            ("env", "dev")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("zone", "a"),
            ("track", "beta")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(Selector::parse("").expect("empty").matches(&labels(&[])));
        assert!(Selector::parse("app==web")
            .expect("parse")
            .matches(&labels(&[("app", "web")])));
        assert!(Selector::parse("a in b").is_err());
    }

    #[test]
    fn the_list_form_of_a_label_selector_round_trips() {
        let json = serde_json::json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]});
        let text = super::super::observe::selector_string(&json).expect("selector");
        let s = Selector::parse(&text).expect("parse");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("canary", "y")
        ])));
    }
}
