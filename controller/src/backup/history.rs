//! The bounded run histories in a VerticeBackup's status (backups and
//! drills): new records merged in newest first, and the "last" slots that
//! only ever move forward in time.

/// The records in `found` whose Job is not yet in `previous`, oldest first
/// (the order their Events are told in).
pub fn unseen<T, K: Ord>(
    previous: &[T],
    found: impl Iterator<Item = T>,
    job: impl Fn(&T) -> &str,
    at: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut fresh: Vec<T> = found
        .filter(|r| !previous.iter().any(|p| job(p) == job(r)))
        .collect();
    fresh.sort_by_key(|r| at(r));
    fresh
}

/// `previous` and `fresh` together, newest first (by `at`), at most `limit`.
pub fn merge<T: Clone, K: Ord>(
    previous: &[T],
    fresh: Vec<T>,
    at: impl Fn(&T) -> K,
    limit: usize,
) -> Vec<T> {
    let mut history = previous.to_vec();
    history.extend(fresh);
    history.sort_by_key(|r| std::cmp::Reverse(at(r)));
    history.truncate(limit);
    history
}

/// Puts `candidate` in `slot` unless the slot already holds a newer record
/// (one the bounded history may have dropped since).
pub fn keep_newest<T: Clone, K: Ord>(
    slot: &mut Option<T>,
    candidate: Option<&T>,
    at: impl Fn(&T) -> K,
) {
    if let Some(c) = candidate {
        if slot.as_ref().is_none_or(|s| at(s) <= at(c)) {
            *slot = Some(c.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_records_oldest_first() {
        let previous = [("a", 1), ("b", 2)];
        let found = [("c", 9), ("a", 1), ("d", 4)].into_iter();
        assert_eq!(
            unseen(&previous, found, |r| r.0, |r| r.1),
            vec![("d", 4), ("c", 9)]
        );
    }

    #[test]
    fn merged_newest_first_and_bounded() {
        assert_eq!(merge(&[3, 1], vec![2, 5], |n| *n, 3), vec![5, 3, 2]);
        assert_eq!(merge(&[], vec![1], |n| *n, 0), Vec::<i32>::new());
    }

    #[test]
    fn a_slot_never_goes_back_in_time() {
        let mut slot = Some(5);
        keep_newest(&mut slot, Some(&3), |n| *n);
        assert_eq!(slot, Some(5));
        keep_newest(&mut slot, Some(&7), |n| *n);
        assert_eq!(slot, Some(7));
        keep_newest(&mut slot, None, |n| *n);
        assert_eq!(slot, Some(7));
        let mut empty = None;
        keep_newest(&mut empty, Some(&1), |n| *n);
        assert_eq!(empty, Some(1));
    }
}
