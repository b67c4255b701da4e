//! Keeps secrets out of anything we print: child-process stderr, error messages.

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
        redact_url_passwords(&out)
    }
}

/// Hides `user:password@` in any URL-like text, whoever put it there.
fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
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
            "connect postgres://bob:***@db:5432/app failed"
        );
        assert_eq!(r.redact("http://host:8080/path"), "http://host:8080/path");
    }
}
