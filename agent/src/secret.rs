//! [`Secret`]: a password or token that settings carry, kept out of every
//! `Debug` print (a settings struct logged or shown in a panic must not
//! reveal it).

use std::fmt;

/// A secret value; `Debug` prints `Secret(***)`, [`Secret::expose`] gives
/// the value to the one place that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the connection or request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An optional secret's value, for the APIs that take `Option<&str>`.
pub fn exposed(secret: &Option<Secret>) -> Option<&str> {
    secret.as_ref().map(Secret::expose)
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::from("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
