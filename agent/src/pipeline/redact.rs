//! Keeps secrets out of anything we print: child-process stderr, error
//! messages. Registered secrets are replaced wherever they appear; URLs
//! follow the one rule of [`vertice_crds::redact`].

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Registers a secret; empty and trivially short values are ignored so we
    /// do not blank out every "a" in a message.
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= 3 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            // Longest first, so a secret containing another is hidden whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        vertice_crds::redact::redact_urls(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_registered_secrets_and_url_passwords() {
        let mut r = Redactor::new();
        r.add("s3cr3t-pw");
        r.add("ab");
        assert_eq!(
            r.redact("auth failed for s3cr3t-pw (ab)"),
            "auth failed for *** (ab)"
        );
        assert_eq!(
            r.redact("connect postgres://bob:hunter2@db:5432/app failed"),
            "connect postgres://***@db:5432/app failed"
        );
        assert_eq!(r.redact("http://host:8080/path"), "http://host:8080/path");
    }
}
