//! The JSON-field check of an HTTP probe: a dotted path into a document and
//! the value it must hold. Pure, so every path form is tested directly.

use serde_json::Value;

/// Finds `path` (`a.b.0.c`: object keys, array indexes) in `document`.
pub fn lookup<'a>(document: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(document, |at, key| match at {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Whether `value` equals `expected`: a string as it is, anything else in
/// its JSON text (`true`, `3`, `null`).
pub fn matches(value: &Value, expected: &str) -> bool {
    match value {
        Value::String(s) => s == expected,
        other => serde_json::from_str::<Value>(expected).is_ok_and(|e| &e == other),
    }
}

/// Ok, or which condition the body fails. The reason names the path (from
/// the spec) and never the value found, nor the parser's message: a probe
/// reports health, and a value copied into the status would let the
/// failover's author read any field of any server she can point it at.
pub fn check(body: &[u8], path: &str, expected: &str) -> Result<(), String> {
    let document: Value =
        serde_json::from_slice(body).map_err(|_| "body is not JSON".to_string())?;
    match lookup(&document, path) {
        None => Err(format!("JSON field {path} is missing")),
        Some(value) if matches(value, expected) => Ok(()),
        Some(_) => Err(format!(
            "JSON field {path} does not equal the expected value"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_walk_objects_and_arrays() {
        let doc = json!({"status": "ok", "checks": {"db": {"up": true}}, "items": [{"n": 3}]});
        assert_eq!(lookup(&doc, "status"), Some(&json!("ok")));
        assert_eq!(lookup(&doc, "checks.db.up"), Some(&json!(true)));
        assert_eq!(lookup(&doc, "items.0.n"), Some(&json!(3)));
        assert_eq!(lookup(&doc, "items.1.n"), None);
        assert_eq!(lookup(&doc, "status.deeper"), None);
        assert_eq!(lookup(&doc, "items.x"), None);
    }

    #[test]
    fn values_compare_as_strings_or_json_text() {
        assert!(matches(&json!("ok"), "ok"));
        assert!(!matches(&json!("ok"), "\"ok\""));
        assert!(matches(&json!(true), "true"));
        assert!(matches(&json!(3), "3"));
        assert!(matches(&json!(null), "null"));
        assert!(!matches(&json!(3), "3.0"));
    }

    #[test]
    fn failures_name_the_condition_not_the_value() {
        let body = br#"{"status": "degraded"}"#;
        assert_eq!(
            check(body, "status", "ok").expect_err("must fail"),
            "JSON field status does not equal the expected value"
        );
        assert_eq!(
            check(b"<html>token-1234", "status", "ok").expect_err("must fail"),
            "body is not JSON"
        );
        assert!(check(body, "nope", "ok")
            .expect_err("must fail")
            .contains("missing"));
        assert!(check(br#"{"status": "ok"}"#, "status", "ok").is_ok());
    }
}
