//! The one redaction rule for every URL the agent or the controller prints:
//! applied to text before it is formatted into a message, a log line, an
//! Event or a status. In each `scheme://…` token, user info that carries
//! more than a plain user name becomes `***`, and the value of every query
//! parameter whose name suggests a secret (`sig`, `X-Amz-Signature`,
//! `X-Amz-Credential`, `token`, `password`, `sslpassword`, `key`…) becomes `***`.

/// Parameter names (lowercase substrings) whose values are never shown.
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "token",
    "pass",
    "pwd",
    "secret",
    "credential",
    "key",
    "auth",
    "session",
];

/// Redacts every URL in `text`.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        out.push_str(&redact_token(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Redacts a value that is meant to be one URL, even when it lacks its
/// `scheme://` (`AKID:SECRET@bucket` is still hidden).
pub fn redact_url(raw: &str) -> String {
    if raw.contains("://") {
        redact_urls(raw)
    } else {
        redact_token(raw)
    }
}

/// One URL after its `scheme://`.
fn redact_token(token: &str) -> String {
    // User info runs to the last '@' (a password may hold '/', '?' or '@').
    let (userinfo, after) = match token.rfind('@') {
        Some(at) => (Some(&token[..at]), &token[at + 1..]),
        None => (None, token),
    };
    let mut out = String::with_capacity(token.len());
    match userinfo {
        Some(user) if is_plain_user(user) => {
            out.push_str(user);
            out.push('@');
        }
        Some(_) => out.push_str("***@"),
        None => {}
    }
    match after.split_once('?') {
        None => out.push_str(after),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            out.push_str(&redact_query(query));
        }
    }
    out
}

fn is_plain_user(user: &str) -> bool {
    !user.is_empty() && !user.contains([':', '/', '?', '#', '@', '&', '='])
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// True for a query or connection parameter name that suggests a secret.
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_user_info_and_secret_parameters() {
        for (raw, shown) in [
            ("s3://AKID:SECRET@bucket/p", "s3://***@bucket/p"),
            (
                "postgres://bob:pa/ss@db:5432/app",
                "postgres://***@db:5432/app",
            ),
            ("postgres://bob:p@ss@db/app", "postgres://***@db/app"),
            (
                "postgres://app@db:5432/sales",
                "postgres://app@db:5432/sales",
            ),
            (
                "https://h/b?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&x=1",
                "https://h/b?X-Amz-Credential=***&X-Amz-Signature=***&x=1",
            ),
            ("azblob://a/c?sv=1&sig=SeCrEt", "azblob://a/c?sv=1&sig=***"),
            ("http://gw:9091/?token=t0k", "http://gw:9091/?token=***"),
            (
                "postgres://db/app?sslmode=require&sslpassword=x",
                "postgres://db/app?sslmode=require&sslpassword=***",
            ),
            ("http://user:pw@gw:9091", "http://***@gw:9091"),
        ] {
            assert_eq!(redact_urls(raw), shown, "{raw}");
        }
    }

    #[test]
    fn leaves_other_text_alone_and_finds_urls_inside_it() {
        assert_eq!(
            redact_urls("store \"s3://k:s@b/p\" refused; see http://host:8080/path"),
            "store \"s3://***@b/p\" refused; see http://host:8080/path"
        );
        assert_eq!(redact_urls("no urls here"), "no urls here");
        assert_eq!(redact_url("AKID:SECRET@bucket"), "***@bucket");
    }
}
