//! Route weights: always a whole split of 100 over the replicas, in spec
//! order. Even splits for a set of replicas and the steps between two
//! splits, both exact (largest remainder), so every weight set we write sums
//! to 100 and is never all zero.

use vertice_crds::failover::ReplicaWeight;

/// 100 split evenly over `chosen`; the remainder goes to the first chosen in
/// `order`. Replicas outside `chosen` get 0.
pub fn even(order: &[&str], chosen: &[&str]) -> Vec<ReplicaWeight> {
    let n = order.iter().filter(|r| chosen.contains(r)).count() as u32;
    let mut remainder = if n == 0 { 0 } else { 100 % n };
    order
        .iter()
        .map(|r| {
            let weight = if chosen.contains(r) {
                let extra = u32::from(remainder > 0);
                remainder -= extra;
                100 / n + extra
            } else {
                0
            };
            ReplicaWeight {
                replica: (*r).to_string(),
                weight,
            }
        })
        .collect()
}

/// Step `k` of `n` from `from` to `to` (same replicas, same order): each
/// weight `from + (to - from)·k/n`, rounded so the sum stays 100.
pub fn step(from: &[ReplicaWeight], to: &[ReplicaWeight], k: u32, n: u32) -> Vec<ReplicaWeight> {
    let (k, n) = (i64::from(k.min(n)), i64::from(n.max(1)));
    // Exact values in units of 1/n.
    let exact: Vec<i64> = from
        .iter()
        .zip(to)
        .map(|(f, t)| i64::from(f.weight) * n + (i64::from(t.weight) - i64::from(f.weight)) * k)
        .collect();
    let mut weights: Vec<i64> = exact.iter().map(|e| e.div_euclid(n)).collect();
    let total: i64 = exact.iter().sum::<i64>() / n;
    let mut short = total - weights.iter().sum::<i64>();
    // Largest fractional part first; spec order on ties.
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(exact[*i].rem_euclid(n)));
    for i in order {
        if short <= 0 {
            break;
        }
        if exact[i].rem_euclid(n) > 0 {
            weights[i] += 1;
            short -= 1;
        }
    }
    from.iter()
        .zip(weights)
        .map(|(f, w)| ReplicaWeight {
            replica: f.replica.clone(),
            weight: u32::try_from(w.clamp(0, 100)).unwrap_or(0),
        })
        .collect()
}

/// Sums to 100, nothing above 100.
pub fn valid(weights: &[ReplicaWeight]) -> bool {
    weights.iter().all(|w| w.weight <= 100) && weights.iter().map(|w| w.weight).sum::<u32>() == 100
}

/// Replicas with traffic.
pub fn active(weights: &[ReplicaWeight]) -> Vec<&str> {
    weights
        .iter()
        .filter(|w| w.weight > 0)
        .map(|w| w.replica.as_str())
        .collect()
}

/// The replica with the most traffic (first in spec order on a tie).
pub fn leading(weights: &[ReplicaWeight]) -> Option<&str> {
    let max = weights.iter().map(|w| w.weight).max()?;
    (max > 0).then(|| {
        weights
            .iter()
            .find(|w| w.weight == max)
            .map(|w| w.replica.as_str())
    })?
}

/// `a=100,b=0` for messages.
pub fn show(weights: &[ReplicaWeight]) -> String {
    weights
        .iter()
        .map(|w| format!("{}={}", w.replica, w.weight))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, u32)]) -> Vec<ReplicaWeight> {
        pairs
            .iter()
            .map(|(r, w)| ReplicaWeight {
                replica: (*r).into(),
                weight: *w,
            })
            .collect()
    }

    #[test]
    fn even_splits_sum_to_100() {
        assert_eq!(even(&["a", "b"], &["b"]), w(&[("a", 0), ("b", 100)]));
        assert_eq!(
            even(&["a", "b", "c"], &["a", "b", "c"]),
            w(&[("a", 34), ("b", 33), ("c", 33)])
        );
        assert_eq!(
            even(&["a", "b", "c"], &["b", "c"]),
            w(&[("a", 0), ("b", 50), ("c", 50)])
        );
    }

    #[test]
    fn steps_move_linearly_and_end_exactly() {
        let from = w(&[("a", 0), ("b", 100)]);
        let to = w(&[("a", 100), ("b", 0)]);
        assert_eq!(step(&from, &to, 1, 4), w(&[("a", 25), ("b", 75)]));
        assert_eq!(step(&from, &to, 2, 3), w(&[("a", 67), ("b", 33)]));
        assert_eq!(step(&from, &to, 3, 3), to);
        assert_eq!(step(&from, &to, 0, 3), from);
        let three = step(
            &w(&[("a", 34), ("b", 33), ("c", 33)]),
            &w(&[("a", 0), ("b", 0), ("c", 100)]),
            1,
            3,
        );
        assert!(valid(&three), "{three:?}");
    }

    #[test]
    fn leading_and_active() {
        let weights = w(&[("a", 25), ("b", 75)]);
        assert_eq!(leading(&weights), Some("b"));
        assert_eq!(active(&weights), vec!["a", "b"]);
        assert_eq!(leading(&w(&[("a", 0), ("b", 0)])), None);
        assert_eq!(show(&weights), "a=25,b=75");
    }
}
