//! Issue 26: a scaler that does not own its target does not act and says
//! why; negative readings are errors; Event notes explain the direction;
//! status is written when a message changes, and only then.

use chrono::Duration;
use vertice_crds::common::find_condition;
use vertice_crds::scaler::VerticeScalerStatus;

use super::support::*;
use crate::scaler::decide::{plan, scale_note, Observed, PromResult};
use crate::scaler::overlap::{self, Owner, Refusal, AMBIGUOUS_TARGET};
use crate::scaler::reconciler::{claims, decision_changed};

fn observed(replicas: i32, cpu: &[&str], queue: Option<f64>) -> Observed {
    Observed {
        spec_replicas: replicas,
        status_replicas: replicas,
        pods: pods(replicas as usize, 1000),
        pod_metrics: Some(Ok(pod_metrics(cpu))),
        prometheus: queue
            .map(|v| {
                (
                    "queue".to_string(),
                    PromResult::Value {
                        value: v,
                        time: t0() - Duration::seconds(5),
                    },
                )
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn refusal() -> Refusal {
    Refusal {
        reason: AMBIGUOUS_TARGET,
        message: "Deployment shop/web is also the target of VerticeScaler a, which is older and acts on it; \
                  this scaler does not act: delete one of them or point spec.targetRef at another target"
            .into(),
    }
}

#[test]
fn a_refused_scaler_decides_but_never_acts_and_warns_once() {
    let s = spec(1, 20, vec![cpu_metric(50)]);
    // 100 % CPU against 50 %: it would scale 2 → 4.
    let mut o = observed(2, &["1", "1"], None);
    o.refusal = Some(refusal());
    let p = plan(&s, None, &o, &VerticeScalerStatus::default(), t0());
    assert!(!p.scale, "a refused scaler must not write the target");
    assert!(p.status.scale_events.is_empty());
    let d = p.status.last_decision.clone().expect("decision");
    assert_eq!(d.desired_replicas, 4, "what it would do is still shown");
    assert!(d.not_acted);
    assert_eq!(d.reason, AMBIGUOUS_TARGET);
    let c = find_condition(&p.status.conditions, "AbleToScale").expect("condition");
    assert_eq!(
        (c.reason.as_str(), c.message.as_str()),
        (AMBIGUOUS_TARGET.as_str(), refusal().message.as_str())
    );
    assert_eq!(p.events.len(), 1, "{:?}", p.events);
    assert!(p.events[0].warning);
    assert_eq!(p.events[0].reason, AMBIGUOUS_TARGET);
    // The next poll, same refusal: no second Event.
    let again = plan(&s, None, &o, &p.status, t0() + Duration::seconds(15));
    assert!(
        again.events.iter().all(|e| e.reason != AMBIGUOUS_TARGET),
        "{:?}",
        again.events
    );
    // Paused and refused: the refusal is what the user must fix.
    o.paused = true;
    let paused = plan(&s, None, &o, &VerticeScalerStatus::default(), t0());
    assert_eq!(
        find_condition(&paused.status.conditions, "AbleToScale")
            .expect("c")
            .reason,
        AMBIGUOUS_TARGET
    );
    // The refusal gone (the owner deleted): it acts.
    o.paused = false;
    o.refusal = None;
    let owner = plan(&s, None, &o, &p.status, t0() + Duration::seconds(30));
    assert!(owner.scale);
    assert_eq!(owner.desired, 4);
}

#[test]
fn a_negative_reading_is_an_error_of_that_metric_with_its_value_beside_the_text() {
    let s = spec(1, 20, vec![prom_metric("queue", 10.0)]);
    let p = plan(
        &s,
        None,
        &observed(3, &[], Some(-150.0)),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!(p.desired, 3, "held, not a scale-down to the minimum");
    let d = p.status.last_decision.clone().expect("decision");
    assert_eq!(d.metrics[0].state, "Error");
    assert_eq!(d.metrics[0].value, Some(-150.0), "the reading is shown");
    let error = d.metrics[0].error.clone().unwrap_or_default();
    assert!(error.contains("below zero"), "{error}");
    assert!(
        !error.contains("150"),
        "no per-poll number in the text: {error}"
    );
    let c = find_condition(&p.status.conditions, "ScalingActive").expect("condition");
    assert!(
        c.message
            .starts_with("queue: the query returned a value below zero"),
        "{}",
        c.message
    );
    // Another negative value the next poll: nothing new to write.
    let next = plan(
        &s,
        None,
        &observed(3, &[], Some(-140.0)),
        &p.status,
        t0() + Duration::seconds(15),
    );
    assert!(!decision_changed(&p.status, &next.status));
    // Zero is a reading (an empty queue), not an error.
    let p = plan(
        &s,
        None,
        &observed(3, &[], Some(0.0)),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!(p.status.last_decision.expect("d").metrics[0].state, "Ok");
}

#[test]
fn a_target_of_zero_or_below_is_an_invalid_spec() {
    for target in [0.0, -5.0, f64::NAN] {
        let s = spec(1, 20, vec![prom_metric("queue", target)]);
        let p = plan(
            &s,
            None,
            &observed(3, &[], Some(1.0)),
            &VerticeScalerStatus::default(),
            t0(),
        );
        let d = p.status.last_decision.expect("decision");
        assert_eq!(d.reason, "InvalidSpec", "target {target}");
        assert!(
            d.message.contains("spec.metrics[0].prometheus.targetValue"),
            "{}",
            d.message
        );
    }
}

#[test]
fn scale_events_explain_the_direction_they_went() {
    // CPU wants 16 on 2 replicas at 400 %: capped at the maximum of 10.
    let s = spec(1, 10, vec![cpu_metric(50)]);
    let p = plan(
        &s,
        None,
        &observed(2, &["4", "4"], None),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!(p.desired, 6, "the default scale-up rate: 2 + 4 pods");
    let note = &p.events[0].note;
    assert!(
        note.starts_with(
            "scaled up from 2 to 6: cpu above its target (400% against 50%, proposing 16)"
        ),
        "{note}"
    );
    assert!(note.contains("rate policy"), "{note}");
    // Below the minimum: the reason is the minimum, in the scale-up's words.
    let s = spec(10, 20, vec![cpu_metric(50)]);
    let p = plan(
        &s,
        None,
        &observed(1, &["100m"], None),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!(p.events[0].reason, "ScaledUp");
    assert_eq!(
        p.events[0].note,
        "scaled up from 1 to 10: below minReplicas 10"
    );
    // Above the maximum.
    let s = spec(1, 3, vec![cpu_metric(50)]);
    let p = plan(
        &s,
        None,
        &observed(5, &["500m"; 5], None),
        &VerticeScalerStatus::default(),
        t0(),
    );
    assert_eq!(
        p.events[0].note,
        "scaled down from 5 to 3: above maxReplicas 3"
    );
    // A proposal above the maximum, reached without a rate limit.
    let d = vertice_crds::scaler::Decision {
        desired_replicas: 10,
        winner: Some("cpu".into()),
        recommendation: Some(15),
        stabilized: Some(15),
        limited_by: Some(vertice_crds::scaler::ScaleReason::TooManyReplicas),
        max_replicas: 10,
        metrics: vec![vertice_crds::scaler::MetricDecision {
            name: "cpu".into(),
            state: vertice_crds::scaler::MetricState::Ok,
            value: Some(150.0),
            target: 50.0,
            proposal: Some(15),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        scale_note(&d, 5),
        "scaled up from 5 to 10: cpu above its target (150 against 50, proposing 15); capped at maxReplicas 10"
    );
    for e in &p.events {
        assert!(
            !e.note.contains('{') && !e.note.contains("Status"),
            "{}",
            e.note
        );
    }
}

#[test]
fn a_changed_error_text_is_written_and_an_unchanged_one_is_not() {
    let s = spec(1, 20, vec![prom_metric("queue", 10.0)]);
    let broken = |error: &str| Observed {
        prometheus: [("queue".to_string(), PromResult::Error(error.into()))].into(),
        ..observed(3, &[], None)
    };
    let first = plan(
        &s,
        None,
        &broken("Prometheus at http://p: connection refused"),
        &VerticeScalerStatus::default(),
        t0(),
    );
    let same = plan(
        &s,
        None,
        &broken("Prometheus at http://p: connection refused"),
        &first.status,
        t0() + Duration::seconds(15),
    );
    assert!(
        !decision_changed(&first.status, &same.status),
        "nothing new: no write"
    );
    let other = plan(
        &s,
        None,
        &broken("Prometheus at http://p: no complete answer within 5s (the query timeout)"),
        &same.status,
        t0() + Duration::seconds(30),
    );
    assert!(
        decision_changed(&same.status, &other.status),
        "a new cause is written"
    );
    // The condition's transition time stays: the state is still False.
    let time = |st: &VerticeScalerStatus| {
        find_condition(&st.conditions, "ScalingActive").map(|c| c.last_transition_time)
    };
    assert_eq!(time(&first.status), time(&other.status));
}

#[test]
fn a_stale_metric_reads_the_same_on_every_poll() {
    let s = spec(1, 20, vec![prom_metric("queue", 10.0)]);
    let old = Observed {
        prometheus: [(
            "queue".to_string(),
            PromResult::Value {
                value: 5.0,
                time: t0() - Duration::minutes(3),
            },
        )]
        .into(),
        ..observed(3, &[], None)
    };
    let first = plan(&s, None, &old, &VerticeScalerStatus::default(), t0());
    let later = plan(&s, None, &old, &first.status, t0() + Duration::seconds(45));
    let error = |st: &VerticeScalerStatus| {
        st.last_decision
            .as_ref()
            .and_then(|d| d.metrics[0].error.clone())
    };
    assert_eq!(error(&first.status), error(&later.status));
    assert!(error(&first.status)
        .unwrap_or_default()
        .contains("2026-12-02T09:57:00Z"));
    assert!(!decision_changed(&first.status, &later.status));
}

#[test]
fn a_refused_scaler_with_a_broken_metric_does_not_warn_scale_held_every_poll() {
    let s = spec(1, 20, vec![prom_metric("queue", 10.0)]);
    let broken = Observed {
        prometheus: [(
            "queue".to_string(),
            PromResult::Error("Prometheus at http://p: connection refused".into()),
        )]
        .into(),
        refusal: Some(refusal()),
        ..observed(3, &[], None)
    };
    let held = |p: &crate::scaler::decide::Plan| {
        p.events.iter().filter(|e| e.reason == "ScaleHeld").count()
    };
    let first = plan(&s, None, &broken, &VerticeScalerStatus::default(), t0());
    let second = plan(
        &s,
        None,
        &broken,
        &first.status,
        t0() + Duration::seconds(15),
    );
    assert_eq!(held(&second), 0, "{:?}", second.events);
    // It acts on nothing, so it holds nothing: the refusal is its Event.
    assert_eq!(held(&first), 0, "{:?}", first.events);
    assert!(first.events.iter().any(|e| e.reason == AMBIGUOUS_TARGET));
    // The owner gone, the hold is its own: said once.
    let owner = Observed {
        refusal: None,
        ..broken.clone()
    };
    let third = plan(
        &s,
        None,
        &owner,
        &second.status,
        t0() + Duration::seconds(30),
    );
    assert_eq!(held(&third), 1, "{:?}", third.events);
    let fourth = plan(
        &s,
        None,
        &owner,
        &third.status,
        t0() + Duration::seconds(45),
    );
    assert_eq!(held(&fourth), 0, "{:?}", fourth.events);
}

#[test]
fn able_to_scale_keeps_its_transition_time_while_refused_paused_or_dry_run() {
    let time = |st: &VerticeScalerStatus| {
        find_condition(&st.conditions, "AbleToScale").map(|c| c.last_transition_time)
    };
    let mut dry = spec(1, 20, vec![cpu_metric(50)]);
    dry.dry_run = true;
    let refused = Observed {
        refusal: Some(refusal()),
        ..observed(2, &["1", "1"], None)
    };
    let paused = Observed {
        paused: true,
        ..observed(2, &["1", "1"], None)
    };
    let plain = observed(2, &["1", "1"], None);
    let s = spec(1, 20, vec![cpu_metric(50)]);
    for (what, spec, o) in [
        ("refused", &s, &refused),
        ("paused", &s, &paused),
        ("dry run", &dry, &plain),
    ] {
        let first = plan(spec, None, o, &VerticeScalerStatus::default(), t0());
        let second = plan(spec, None, o, &first.status, t0() + Duration::seconds(15));
        let c = find_condition(&second.status.conditions, "AbleToScale").expect("condition");
        assert!(!c.is_true(), "{what}");
        assert_eq!(time(&first.status), Some(t0()), "{what}");
        assert_eq!(time(&first.status), time(&second.status), "{what}");
    }
    // A real transition still moves it: the refusal gone, it is True now.
    let first = plan(&s, None, &refused, &VerticeScalerStatus::default(), t0());
    let later = t0() + Duration::seconds(30);
    let owner = plan(&s, None, &plain, &first.status, later);
    assert_eq!(time(&owner.status), Some(later));
}

#[test]
fn an_owner_is_told_once_per_change_of_the_scalers_it_refuses() {
    let owner = |names: &[&str]| Owner {
        object: "Deployment shop/web".into(),
        refuses: names.iter().map(|n| n.to_string()).collect(),
    };
    let mut announced = None;
    let first = overlap::owner_event(Some(&owner(&["second"])), &mut announced)
        .expect("the first overlap is told");
    assert!(!first.warning, "a Normal Event: the owner acts as before");
    assert_eq!(first.reason, AMBIGUOUS_TARGET);
    assert!(
        first
            .note
            .starts_with("Deployment shop/web is also the target of VerticeScaler second"),
        "{}",
        first.note
    );
    assert!(overlap::owner_event(Some(&owner(&["second"])), &mut announced).is_none());
    let more = overlap::owner_event(Some(&owner(&["second", "third"])), &mut announced)
        .expect("a new set is told");
    assert!(
        more.note.contains("VerticeScalers second, third"),
        "{}",
        more.note
    );
    assert!(overlap::owner_event(Some(&owner(&["second", "third"])), &mut announced).is_none());
    // No longer shared: nothing said, and a later overlap is told again.
    assert!(overlap::owner_event(None, &mut announced).is_none());
    assert!(overlap::owner_event(Some(&owner(&["second"])), &mut announced).is_some());
}

fn scaler(
    name: &str,
    second: i64,
    spec: vertice_crds::VerticeScalerSpec,
) -> std::sync::Arc<vertice_crds::VerticeScaler> {
    let mut s = vertice_crds::VerticeScaler::new(name, spec);
    s.metadata.namespace = Some("shop".into());
    s.metadata.uid = Some(format!("uid-{name}"));
    s.metadata.creation_timestamp =
        k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second)
            .ok()
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
    std::sync::Arc::new(s)
}

#[test]
fn an_older_scaler_with_an_invalid_spec_does_not_hold_the_target() {
    let invalid = spec(1, 20, vec![prom_metric("queue", 0.0)]);
    assert!(crate::scaler::decide::validate(&invalid).is_err());
    let valid = spec(1, 20, vec![cpu_metric(50)]);
    let scalers = [
        scaler("old", 0, invalid),
        scaler("young", 60, valid.clone()),
    ];
    let refused = overlap::refusals(&claims(&scalers), &[]);
    assert!(refused.is_empty(), "the valid one acts: {refused:?}");
    // Both valid: the older owns it, as before.
    let scalers = [scaler("old", 0, valid.clone()), scaler("young", 60, valid)];
    let refused = overlap::refusals(&claims(&scalers), &[]);
    assert_eq!(refused["uid-young"].reason, AMBIGUOUS_TARGET);
}

#[test]
fn a_paused_owner_keeps_the_target_and_the_others_are_told_it_is_paused() {
    let s = spec(1, 20, vec![cpu_metric(50)]);
    let owner = scaler("old", 0, s.clone());
    let mut paused = (*owner).clone();
    paused.metadata.annotations = Some(
        [(
            vertice_crds::scaler::PAUSED_ANNOTATION.to_string(),
            "true".to_string(),
        )]
        .into(),
    );
    let scalers = [std::sync::Arc::new(paused), scaler("young", 60, s.clone())];
    let refused = overlap::refusals(&claims(&scalers), &[]);
    let message = &refused["uid-young"].message;
    assert!(
        message.starts_with("Deployment shop/web is also the target of VerticeScaler old, which is older and paused"),
        "{message}"
    );
    assert!(!message.contains("acts on it"), "{message}");
    // Resumed: the message says it acts.
    let scalers = [owner, scaler("young", 60, s)];
    let refused = overlap::refusals(&claims(&scalers), &[]);
    assert!(
        refused["uid-young"]
            .message
            .contains("which is older and acts on it"),
        "{}",
        refused["uid-young"].message
    );
    // The owner learns whom it refuses.
    let o = overlap::resolve(&claims(&scalers), &[]);
    assert_eq!(o.owners["uid-old"].refuses, vec!["young".to_string()]);
    assert_eq!(o.owners["uid-old"].object, "Deployment shop/web");
}

#[test]
fn a_missing_container_names_the_pod_first_by_name_whatever_the_list_order() {
    use crate::scaler::pods::{samples, Resource};
    let mut list = pod_metrics(&["100m", "100m", "100m"]);
    list.reverse();
    let forward = samples(&list, Resource::Cpu, Some("sidecar")).expect_err("missing");
    list.reverse();
    let backward = samples(&list, Resource::Cpu, Some("sidecar")).expect_err("missing");
    assert_eq!(forward, backward);
    assert!(forward.contains("for pod /p0:"), "{forward}");
}

#[test]
fn a_failing_watch_is_reported_once_per_spell() {
    let mut spell = crate::scaler::cache::FailingSpell::default();
    assert!(spell.first_error());
    assert!(!spell.first_error(), "a retry that fails again is not news");
    assert!(!spell.first_error());
    spell.ok();
    assert!(spell.first_error(), "failing again after working");
}
