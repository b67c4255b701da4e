//! Namespace and backup names: they become path segments in every store, so
//! every command validates them the same way, once, before a store is opened.

use crate::catalog::Scope;
use crate::error::{Error, Result};

/// Names as Kubernetes allows them (DNS subdomain): lowercase letters, digits,
/// '-' and '.', starting and ending with a letter or digit. Nothing else can
/// reach a store key, so no name can climb out of its directory.
pub fn validate_name(value: &str, flag: &str) -> Result<()> {
    if is_valid_name(value) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{flag} {value:?} is not a valid name: use 1-253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        )))
    }
}

fn is_valid_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !value.contains("..")
}

/// The backup name for a database when `--name` is not given: the database
/// name itself, if it is already a valid name. Any mapping (`Sales_DB` →
/// `sales-db`) would file distinct databases (`coll_a`, `coll-a`) under one
/// name, where retention would then delete one database's backups to keep the
/// other's, so a name that needs mapping is refused with a suggestion.
pub fn name_for_database(database: &str) -> Result<String> {
    if is_valid_name(database) {
        return Ok(database.to_string());
    }
    Err(Error::usage(format!(
        "the database name {database:?} cannot be used as a backup name as it is (names are lowercase letters, digits, '-' and '.'); pass --name, e.g. --name {}",
        suggest(database)
    )))
}

fn suggest(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        "backup".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The part of the store a read command looks at, from `--namespace` /
/// `--name`, each validated when given.
pub fn scope(namespace: Option<&str>, name: Option<&str>) -> Result<Scope> {
    if let Some(ns) = namespace {
        validate_name(ns, "--namespace")?;
    }
    if let Some(name) = name {
        validate_name(name, "--name")?;
    }
    Ok(Scope {
        namespace: namespace.map(String::from),
        name: name.map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("orders-db", "--name").is_ok());
        assert!(validate_name("v1.2", "--name").is_ok());
        for bad in ["", "..", ".", "a/b", "Caps", "-a", "a-", "a..b", "a b"] {
            let err = validate_name(bad, "--name").expect_err(bad);
            assert!(err.to_string().contains("--name"), "{err}");
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn database_names_are_used_only_when_valid_as_they_are() {
        assert_eq!(name_for_database("sales").expect("valid"), "sales");
        let err = name_for_database("coll_a").expect_err("needs mapping");
        assert!(err.to_string().contains("--name coll-a"), "{err}");
        assert!(name_for_database("Sales").is_err());
        assert!(name_for_database("__")
            .expect_err("empty")
            .to_string()
            .contains("--name backup"));
    }

    #[test]
    fn scope_validates_each_given_name() {
        assert!(scope(Some(".."), None).is_err());
        assert!(scope(Some(""), Some("")).is_err());
        assert!(scope(None, Some("../x")).is_err());
        assert_eq!(
            scope(Some("shop"), Some("orders"))
                .expect("valid")
                .list_prefix(),
            "shop/orders/"
        );
    }
}

/// The first `shown` of `items` joined by `separator`, and how many more
/// there are: a message that names what is wrong without a wall of text.
pub fn first_few<T: AsRef<str>>(items: &[T], shown: usize, separator: &str) -> String {
    let mut text = items
        .iter()
        .take(shown)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(separator);
    if items.len() > shown {
        text.push_str(&format!(" and {} more", items.len() - shown));
    }
    text
}

#[cfg(test)]
mod first_few_tests {
    use super::first_few;

    #[test]
    fn names_the_first_and_counts_the_rest() {
        assert_eq!(first_few(&["a", "b"], 3, ", "), "a, b");
        assert_eq!(first_few(&["a", "b", "c", "d"], 2, "; "), "a; b and 2 more");
        assert_eq!(first_few::<&str>(&[], 2, ", "), "");
    }
}
