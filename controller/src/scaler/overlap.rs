//! Which scaler may act on a target that several claim. Two autoscalers on
//! one `/scale` each write `spec.replicas` from their own view and undo each
//! other every poll; upstream's HPA refuses this (`AmbiguousSelector`). Pure:
//! the loop feeds it the scalers and HPAs its watch caches hold.
//!
//! The rules:
//! - Of the scalers that act on one target, the oldest (creationTimestamp,
//!   then name) owns it; every other is refused (`AmbiguousTarget`).
//! - An upstream HorizontalPodAutoscaler on the target refuses all of ours
//!   (`TargetOwnedByHPA`): we cannot stop the HPA, so acting would fight it.
//! - A `dryRun` scaler never writes, so it claims nothing and is never
//!   refused: trying a scaler next to a live HPA or scaler is how one
//!   migrates. A paused scaler does claim: a pause is a temporary stop, and
//!   pausing the owner must not hand its target to a different scaler; the
//!   others' message says the owner is paused, so nobody reads it as acting.
//! - A scaler whose spec is invalid (`decide::validate`) never scales, so it
//!   claims nothing either: it cannot hold a target it would leave alone.
//!   The check reads the spec only, so the choice is the same on every tick.
//! - The owner is told too: a Normal Event naming the scalers it refuses,
//!   once per change of that set ([`owner_event`]).
//!
//! Detection compares the target objects named in `targetRef` /
//! `scaleTargetRef`: a scaler on a Deployment and another on one of its
//! ReplicaSets are not seen as overlapping (upstream compares the pods'
//! selectors instead).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use vertice_crds::scaler::ScaleReason;

use crate::events::Event;

/// A scale target as the API server identifies it: the API version is
/// reduced to its group, since `apps/v1` and `apps/v1beta2` name the same
/// Deployment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub namespace: String,
    /// `None` when the reference gives no API version (an HPA may omit it):
    /// it then matches the kind in any group.
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
}

impl TargetKey {
    pub fn new(namespace: &str, api_version: Option<&str>, kind: &str, name: &str) -> Self {
        let group = api_version.filter(|v| !v.is_empty()).map(|v| {
            let group = v.split_once('/').map(|(g, _)| g).unwrap_or("");
            // extensions/v1beta1 served the same Deployments and ReplicaSets
            // that apps/v1 serves now.
            if group == "extensions" && matches!(kind, "Deployment" | "ReplicaSet") {
                "apps".to_string()
            } else {
                group.to_string()
            }
        });
        TargetKey {
            namespace: namespace.to_string(),
            group,
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }

    /// Whether both name the same object (a missing group matches any).
    pub fn same_object(&self, other: &TargetKey) -> bool {
        self.namespace == other.namespace
            && self.kind == other.kind
            && self.name == other.name
            && match (&self.group, &other.group) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// One VerticeScaler's claim on its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub uid: String,
    pub name: String,
    pub created: Option<DateTime<Utc>>,
    pub target: TargetKey,
    /// `false` for a `dryRun` scaler, which never writes the target, and
    /// for one whose spec is invalid, which never scales.
    pub acts: bool,
    /// The pause annotation is set: it still claims, and the refused are
    /// told it is paused.
    pub paused: bool,
}

/// An upstream HorizontalPodAutoscaler and its target.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaClaim {
    pub name: String,
    pub target: TargetKey,
}

/// Why a scaler must not act: the condition and Event reason, and a
/// sentence naming the others and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: ScaleReason,
    pub message: String,
}

pub const AMBIGUOUS_TARGET: ScaleReason = ScaleReason::AmbiguousTarget;
pub const TARGET_OWNED_BY_HPA: ScaleReason = ScaleReason::TargetOwnedByHpa;

/// A scaler that owns a target others claim too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The target, as in the messages: `Deployment shop/web`.
    pub object: String,
    /// The names of the scalers it refuses, sorted.
    pub refuses: Vec<String>,
}

/// Every scaler's verdict, by uid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlap {
    /// A scaler not in the map may act.
    pub refused: HashMap<String, Refusal>,
    /// The owners of shared targets (not of those an HPA holds).
    pub owners: HashMap<String, Owner>,
    /// The target each scaler claimed when this was worked out.
    pub judged: HashMap<String, TargetKey>,
}

impl Overlap {
    /// Whether the scaler `uid`, polled with a copy that names `target`,
    /// may act. A namespace's round can outlive the tick that started it,
    /// so its copy may predate a `targetRef` edit the verdicts already
    /// reflect: judged against another target, it does not act this poll
    /// (otherwise two scalers could each find themselves the owner once).
    pub fn verdict(&self, uid: &str, target: &TargetKey) -> Option<Refusal> {
        if self.judged.get(uid) != Some(target) {
            return Some(Refusal {
                reason: AMBIGUOUS_TARGET,
                message: "spec.targetRef changed while this scaler was being polled: it does not \
                          act until the next poll has worked out who owns the target"
                    .to_string(),
            });
        }
        self.refused.get(uid).cloned()
    }
}

/// The refusals, by scaler uid; a scaler not in the map may act.
pub fn refusals(claims: &[Claim], hpas: &[HpaClaim]) -> HashMap<String, Refusal> {
    resolve(claims, hpas).refused
}

/// The owner's Normal Event when the scalers it refuses differ from those
/// it was last told of (`announced`, updated here): once per change of that
/// set, not every poll. `None` as owner (it owns no shared target) forgets
/// the set, so a later overlap is announced again.
pub fn owner_event(owner: Option<&Owner>, announced: &mut Option<Vec<String>>) -> Option<Event> {
    let Some(owner) = owner else {
        *announced = None;
        return None;
    };
    if announced.as_ref() == Some(&owner.refuses) {
        return None;
    }
    *announced = Some(owner.refuses.clone());
    let (noun, verb) = if owner.refuses.len() == 1 {
        ("VerticeScaler", "does")
    } else {
        ("VerticeScalers", "do")
    };
    Some(Event::normal(
        AMBIGUOUS_TARGET.as_str(),
        format!(
            "{} is also the target of {noun} {}, which {verb} not act: this scaler is older and owns it; \
             delete the others or point their spec.targetRef at another target",
            owner.object,
            owner.refuses.join(", ")
        ),
    ))
}

/// Who owns what and who is refused.
pub fn resolve(claims: &[Claim], hpas: &[HpaClaim]) -> Overlap {
    let mut refused = HashMap::new();
    let mut owners = HashMap::new();
    let mut by_target: BTreeMap<&TargetKey, Vec<&Claim>> = BTreeMap::new();
    for claim in claims.iter().filter(|c| c.acts) {
        by_target.entry(&claim.target).or_default().push(claim);
    }
    for (target, claimants) in by_target {
        let object = format!("{} {}/{}", target.kind, target.namespace, target.name);
        if let Some(refusal) = hpa_refusal(target, hpas, &object) {
            for claim in claimants {
                refused.insert(claim.uid.clone(), refusal.clone());
            }
            continue;
        }
        if claimants.len() < 2 {
            continue;
        }
        let (owner, refusals) = oldest_owns(claimants, object);
        refused.extend(refusals);
        owners.insert(owner.0, owner.1);
    }
    let judged = claims
        .iter()
        .map(|c| (c.uid.clone(), c.target.clone()))
        .collect();
    Overlap {
        refused,
        owners,
        judged,
    }
}

/// The refusal every scaler of `target` gets when an upstream HPA scales it.
fn hpa_refusal(target: &TargetKey, hpas: &[HpaClaim], object: &str) -> Option<Refusal> {
    let mut hpa_names: Vec<&str> = hpas
        .iter()
        .filter(|h| h.target.same_object(target))
        .map(|h| h.name.as_str())
        .collect();
    if hpa_names.is_empty() {
        return None;
    }
    hpa_names.sort_unstable();
    let names = hpa_names.join(", ");
    Some(Refusal {
        reason: TARGET_OWNED_BY_HPA,
        message: format!(
            "{object} is scaled by HorizontalPodAutoscaler {names}, so this scaler does not act \
             (both would set spec.replicas): delete the HPA or this scaler, or set spec.dryRun to only compare"
        ),
    })
}

/// Several scalers claim one target: the oldest owns it (by uid), the
/// others are refused (by uid).
fn oldest_owns(
    mut claimants: Vec<&Claim>,
    object: String,
) -> ((String, Owner), Vec<(String, Refusal)>) {
    // The oldest claim wins; a missing timestamp (never from the API
    // server) sorts last; the name breaks ties deterministically.
    claimants.sort_by(|a, b| {
        (a.created.is_none(), a.created, &a.name).cmp(&(b.created.is_none(), b.created, &b.name))
    });
    let owner = claimants[0];
    let mut refuses: Vec<String> = claimants[1..].iter().map(|c| c.name.clone()).collect();
    refuses.sort_unstable();
    let holds = if owner.paused {
        "which is older and paused: a paused scaler keeps its target, so nothing scales it until that scaler is resumed or deleted"
    } else {
        "which is older and acts on it"
    };
    let refusals = claimants[1..]
        .iter()
        .map(|claim| {
            let others: Vec<&str> = claimants
                .iter()
                .filter(|c| c.uid != claim.uid && c.uid != owner.uid)
                .map(|c| c.name.as_str())
                .collect();
            let also = if others.is_empty() {
                String::new()
            } else {
                format!(" (also claimed by {}, likewise refused)", others.join(", "))
            };
            let refusal = Refusal {
                reason: AMBIGUOUS_TARGET,
                message: format!(
                    "{object} is also the target of VerticeScaler {}, {holds}{also}; \
                     this scaler does not act: delete one of them or point spec.targetRef at another target",
                    owner.name
                ),
            };
            (claim.uid.clone(), refusal)
        })
        .collect();
    ((owner.uid.clone(), Owner { object, refuses }), refusals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(2026, 12, 5, 1, minute, 0).single()
    }

    fn claim(name: &str, minute: u32, api_version: &str, target: &str) -> Claim {
        Claim {
            uid: format!("uid-{name}"),
            name: name.into(),
            created: at(minute),
            target: TargetKey::new("shop", Some(api_version), "Deployment", target),
            acts: true,
            paused: false,
        }
    }

    #[test]
    fn a_copy_judged_against_another_target_does_not_act() {
        // a (older) moved from batch to web, b was alone on web: the new
        // verdicts make a the owner of web. A round still polling the old
        // copy of a (naming batch) must not act, nor may b.
        let claims = [
            claim("a", 1, "apps/v1", "web"),
            claim("b", 2, "apps/v1", "web"),
        ];
        let overlap = resolve(&claims, &[]);
        let old_copy = TargetKey::new("shop", Some("apps/v1"), "Deployment", "batch");
        let web = TargetKey::new("shop", Some("apps/v1"), "Deployment", "web");
        assert!(overlap.verdict("uid-a", &old_copy).is_some());
        assert!(overlap.verdict("uid-a", &web).is_none(), "the owner acts");
        assert!(overlap.verdict("uid-b", &web).is_some());
        assert!(overlap.verdict("uid-new", &web).is_some(), "not judged yet");
    }

    #[test]
    fn the_oldest_scaler_owns_a_shared_target_and_the_others_are_told_why() {
        let claims = [
            claim("b", 1, "apps/v1", "web"),
            claim("a", 2, "apps/v1", "web"),
            claim("c", 3, "apps/v1", "web"),
            claim("alone", 0, "apps/v1", "batch"),
        ];
        let refused = refusals(&claims, &[]);
        assert!(!refused.contains_key("uid-b"), "the oldest acts");
        assert!(!refused.contains_key("uid-alone"));
        let a = &refused["uid-a"];
        assert_eq!(a.reason, AMBIGUOUS_TARGET);
        assert!(
            a.message
                .starts_with("Deployment shop/web is also the target of VerticeScaler b"),
            "{}",
            a.message
        );
        assert!(a.message.contains("also claimed by c"), "{}", a.message);
        assert!(a.message.contains("spec.targetRef"), "{}", a.message);
        assert_eq!(refused.len(), 2);
    }

    #[test]
    fn the_choice_does_not_depend_on_order_and_ties_go_by_name() {
        let mut claims = vec![
            claim("y", 5, "apps/v1", "web"),
            claim("x", 5, "apps/v1", "web"),
        ];
        let first = refusals(&claims, &[]);
        claims.reverse();
        assert_eq!(first, refusals(&claims, &[]));
        assert!(first.contains_key("uid-y") && !first.contains_key("uid-x"));
    }

    #[test]
    fn versions_of_one_group_name_the_same_object_and_other_groups_do_not() {
        let claims = [
            claim("old", 1, "apps/v1", "web"),
            claim("beta", 2, "extensions/v1beta1", "web"),
            claim("custom", 3, "example.com/v1", "web"),
        ];
        let refused = refusals(&claims, &[]);
        assert_eq!(refused["uid-beta"].reason, AMBIGUOUS_TARGET);
        assert!(
            !refused.contains_key("uid-custom"),
            "another group's Deployment"
        );
        // Same name, other namespace or kind: not the same object.
        let mut other_ns = claim("elsewhere", 4, "apps/v1", "web");
        other_ns.target.namespace = "other".into();
        let mut sts = claim("sts", 4, "apps/v1", "web");
        sts.target.kind = "StatefulSet".into();
        let refused = refusals(&[claim("old", 1, "apps/v1", "web"), other_ns, sts], &[]);
        assert!(refused.is_empty());
    }

    #[test]
    fn an_hpa_on_the_target_refuses_every_scaler_of_ours() {
        let claims = [
            claim("a", 1, "apps/v1", "web"),
            claim("b", 2, "apps/v1", "web"),
        ];
        let hpas = [HpaClaim {
            name: "web-hpa".into(),
            target: TargetKey::new("shop", Some("apps/v1"), "Deployment", "web"),
        }];
        let refused = refusals(&claims, &hpas);
        for uid in ["uid-a", "uid-b"] {
            assert_eq!(refused[uid].reason, TARGET_OWNED_BY_HPA);
            assert!(
                refused[uid]
                    .message
                    .contains("HorizontalPodAutoscaler web-hpa"),
                "{}",
                refused[uid].message
            );
        }
        // An HPA without an apiVersion matches the kind in any group.
        let hpas = [HpaClaim {
            name: "loose".into(),
            target: TargetKey::new("shop", None, "Deployment", "web"),
        }];
        assert_eq!(refusals(&claims[..1], &hpas).len(), 1);
    }

    #[test]
    fn a_dry_run_scaler_claims_nothing_and_is_never_refused() {
        let mut shadow = claim("shadow", 0, "apps/v1", "web");
        shadow.acts = false;
        let claims = [shadow, claim("live", 1, "apps/v1", "web")];
        assert!(refusals(&claims, &[]).is_empty(), "the live one owns it");
        let hpas = [HpaClaim {
            name: "web".into(),
            target: TargetKey::new("shop", Some("apps/v1"), "Deployment", "web"),
        }];
        let refused = refusals(&claims, &hpas);
        assert!(!refused.contains_key("uid-shadow"));
        assert!(refused.contains_key("uid-live"));
    }
}
