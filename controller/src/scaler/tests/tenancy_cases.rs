//! A shared cluster: what a tenant's scaler may refer to, and what its
//! status and Events may show.

use chrono::Duration;
use vertice_crds::common::find_condition;
use vertice_crds::tenancy::{check_secret, SecretReferencePolicy, SECRET_NOT_ALLOWED};
use vertice_crds::VerticeScalerSpec;

use super::support::*;
use crate::scaler::decide::{plan, Observed, PromResult};
use crate::scaler::reconciler::redact_status;

fn observed(replicas: i32, queue: PromResult) -> Observed {
    Observed {
        spec_replicas: replicas,
        status_replicas: replicas,
        pods: pods(replicas as usize, 1000),
        prometheus: [("queue".to_string(), queue)].into(),
        ..Default::default()
    }
}

fn refused() -> PromResult {
    let e = check_secret(
        SecretReferencePolicy::Labelled,
        "team-a",
        "db-password",
        None,
    )
    .expect_err("unlabelled");
    PromResult::Refused {
        reason: SECRET_NOT_ALLOWED,
        message: e.to_string(),
    }
}

#[test]
fn a_refused_secret_stops_scaling_on_that_metric_and_says_so_once() {
    let s = spec(1, 10, vec![prom_metric("queue", 100.0)]);
    let p = plan(
        &s,
        Some(1),
        &observed(3, refused()),
        &Default::default(),
        t0(),
    );
    let d = p.status.last_decision.clone().expect("decision");
    assert_eq!(d.metrics[0].state, "Error");
    let error = d.metrics[0].error.clone().expect("error");
    assert!(
        error.starts_with(
            "Secret team-a/db-password is not labelled vertice.io/allow-reference=true"
        ),
        "{error}"
    );
    assert_eq!((p.desired, p.scale), (3, false));
    let active = find_condition(&p.status.conditions, "ScalingActive").expect("condition");
    assert!(!active.is_true());
    assert_eq!(active.reason, "SecretNotAllowed");
    assert!(
        active.message.contains("queue: Secret team-a/db-password"),
        "{}",
        active.message
    );
    let warned: Vec<_> = p
        .events
        .iter()
        .filter(|e| e.reason == "SecretNotAllowed")
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", p.events);
    assert!(warned[0].warning);
    assert_eq!(warned[0].note, error);
    // The next poll, still refused: no second Event.
    let again = plan(
        &s,
        Some(1),
        &observed(3, refused()),
        &p.status,
        t0() + Duration::seconds(15),
    );
    assert!(
        again.events.iter().all(|e| e.reason != "SecretNotAllowed"),
        "{:?}",
        again.events
    );
    // The owner labels the Secret: scaling is active again.
    let fixed = plan(
        &s,
        Some(1),
        &observed(
            3,
            PromResult::Value {
                value: 300.0,
                time: t0(),
            },
        ),
        &again.status,
        t0() + Duration::seconds(30),
    );
    let active = find_condition(&fixed.status.conditions, "ScalingActive").expect("condition");
    assert_eq!(
        (active.is_true(), active.reason.as_str()),
        (true, "ValidMetricFound")
    );
}

#[test]
fn credentials_in_the_prometheus_url_never_reach_the_status() {
    let s = spec(1, 10, vec![prom_metric("queue", 100.0)]);
    let leaky = PromResult::Error(
        "Prometheus at http://alice:hunter2@prom.team-a:9090/?token=t0k3n answered 503 Service Unavailable"
            .into(),
    );
    let mut status = plan(&s, Some(1), &observed(3, leaky), &Default::default(), t0()).status;
    status.conditions[0].message = "see https://bob:pw@h/x?password=p4ss".into();
    redact_status(&mut status);
    let text = serde_json::to_string(&status).expect("status");
    for secret in ["hunter2", "alice:", "t0k3n", "bob:pw", "p4ss"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(
        text.contains("http://***@prom.team-a:9090/?token=***"),
        "{text}"
    );
}

#[test]
fn a_scaler_names_nothing_outside_its_namespace() {
    // The target and the token's Secret have no namespace field: one given
    // anyway is dropped (the CRD's structural schema prunes it too), so
    // the controller reads them in the scaler's own namespace only.
    let s: VerticeScalerSpec = serde_json::from_value(serde_json::json!({
        "targetRef": {"kind": "Deployment", "name": "web", "namespace": "team-b"},
        "maxReplicas": 3,
        "metrics": [{"name": "q", "prometheus": {"query": "up", "targetValue": 1}}],
        "prometheus": {"url": "http://p:9090",
                       "bearerTokenSecretRef": {"name": "s", "key": "k", "namespace": "team-b"}}
    }))
    .expect("spec");
    let back = serde_json::to_value(&s).expect("json");
    assert_eq!(back["targetRef"].get("namespace"), None);
    assert_eq!(
        back["prometheus"]["bearerTokenSecretRef"].get("namespace"),
        None
    );
}

#[test]
fn a_refused_metric_beside_a_working_one_names_the_refusal_and_scaling_goes_on() {
    let s = spec(1, 10, vec![cpu_metric(50), prom_metric("queue", 100.0)]);
    let mut o = observed(2, refused());
    o.pod_metrics = Some(Ok(pod_metrics(&["800m", "800m"])));
    let p = plan(&s, Some(2), &o, &Default::default(), t0());
    let active = find_condition(&p.status.conditions, "ScalingActive").expect("condition");
    assert!(active.is_true(), "the CPU metric still scales");
    assert_eq!(active.reason, "SecretNotAllowed");
    assert!(p.desired > 2, "scaled up on CPU: {}", p.desired);
}
