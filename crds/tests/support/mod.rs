//! Checks a custom resource against its CRD the way the API server would:
//! the structural OpenAPI schema (unknown fields, types, enums, required,
//! bounds, patterns) and then the CEL rules, with kube's client-side CEL.

use serde_json::Value;

/// The `openAPIV3Schema` of the first version of a CRD.
pub fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("derived CRD has a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// Every problem with `object`, as `path: what` lines; empty when valid.
pub fn problems(schema: &Value, object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    structural(schema, object, "", &mut out);
    if out.is_empty() {
        if let Err(errors) = kube::core::cel::Validator::new().validate(schema, object, None) {
            out.extend(errors.into_vec().into_iter().map(|e| format!("CEL {e}")));
        }
    }
    out
}

fn structural(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        && schema.get("properties").is_none()
    {
        return;
    }
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) {
            out.push(format!("{path}: null is not allowed"));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            out.push(format!("{path}: expected an integer or a string"));
        }
        return;
    }
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        out.push(format!("{path}: expected {}, got {value}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            out.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            out.push(format!(
                "{path}: {n} is below the minimum {}",
                schema["minimum"]
            ));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            out.push(format!(
                "{path}: {n} is above the maximum {}",
                schema["maximum"]
            ));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            out.push(format!("{path}: shorter than {}", schema["minLength"]));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            out.push(format!("{path}: longer than {}", schema["maxLength"]));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let re = regex::Regex::new(pattern).expect("schema pattern compiles");
            if !re.is_match(s) {
                out.push(format!("{path}: {s:?} does not match {pattern}"));
            }
        }
    }
    if let Some(items) = value.as_array() {
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (items.len() as u64) < m)
        {
            out.push(format!("{path}: fewer than {} items", schema["minItems"]));
        }
        if schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (items.len() as u64) > m)
        {
            out.push(format!("{path}: more than {} items", schema["maxItems"]));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                structural(item_schema, item, &format!("{path}[{i}]"), out);
            }
        }
    }
    if let Some(map) = value.as_object() {
        let required = schema
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                out.push(format!("{path}.{key}: required"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (key, v) in map {
            let child = format!("{path}.{key}");
            // metadata is validated by the API server itself, not the CRD schema.
            if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match (properties.and_then(|p| p.get(key)), additional) {
                (Some(s), _) => structural(s, v, &child, out),
                (None, Some(s)) if s.is_object() => structural(s, v, &child, out),
                (None, _) if properties.is_none() && additional.is_none() => {}
                _ => out.push(format!(
                    "{child}: unknown field (the API server would drop it)"
                )),
            }
        }
    }
}
