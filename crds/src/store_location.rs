//! Where backups live: `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `azblob://account/container/prefix` or `file:///path`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A parsed store URL. The prefix never starts or ends with `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoreLocation {
    S3 {
        bucket: String,
        prefix: String,
    },
    Gcs {
        bucket: String,
        prefix: String,
    },
    Azure {
        account: String,
        container: String,
        prefix: String,
    },
    File {
        root: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreLocationError {
    #[error("store URL {url:?} is invalid: {reason}; expected s3://bucket/prefix, gs://bucket/prefix, azblob://account/container/prefix or file:///path")]
    Malformed { url: String, reason: String },
    #[error("store URL {url:?} uses unknown scheme {scheme:?}; expected s3://, gs://, azblob:// or file://")]
    UnknownScheme { url: String, scheme: String },
    #[error("store URL {url:?} names no {what}: {hint}")]
    Missing {
        url: String,
        what: &'static str,
        hint: &'static str,
    },
    #[error("store URL {url:?} must not carry credentials, a query or a fragment: credentials come from the environment or a mounted Secret")]
    Extra { url: String },
}

impl StoreLocation {
    /// A short human description for logs (never contains secrets: store URLs carry none).
    pub fn scheme(&self) -> &'static str {
        match self {
            StoreLocation::S3 { .. } => "s3",
            StoreLocation::Gcs { .. } => "gs",
            StoreLocation::Azure { .. } => "azblob",
            StoreLocation::File { .. } => "file",
        }
    }
}

impl FromStr for StoreLocation {
    type Err = StoreLocationError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let malformed = |reason: &str| StoreLocationError::Malformed {
            url: crate::redact::redact_url(raw),
            reason: reason.to_string(),
        };
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| malformed("missing \"scheme://\""))?;
        let scheme_lower = scheme.to_ascii_lowercase();
        if rest.contains(['?', '#']) || rest.split('/').next().is_some_and(|a| a.contains('@')) {
            return Err(StoreLocationError::Extra {
                url: crate::redact::redact_url(raw),
            });
        }
        let missing = |what, hint| StoreLocationError::Missing {
            url: crate::redact::redact_url(raw),
            what,
            hint,
        };
        match scheme_lower.as_str() {
            "s3" | "gs" => {
                let (bucket, prefix) = split_first(rest);
                if bucket.is_empty() {
                    return Err(missing("bucket", "write it as s3://BUCKET/optional/prefix"));
                }
                validate_bucket(bucket).map_err(|r| malformed(&r))?;
                let prefix = clean_prefix(prefix).map_err(|r| malformed(&r))?;
                let bucket = bucket.to_string();
                Ok(if scheme_lower == "s3" {
                    StoreLocation::S3 { bucket, prefix }
                } else {
                    StoreLocation::Gcs { bucket, prefix }
                })
            }
            "azblob" => {
                let (account, rest) = split_first(rest);
                let (container, prefix) = split_first(rest);
                if account.is_empty() {
                    return Err(missing(
                        "storage account",
                        "write it as azblob://ACCOUNT/CONTAINER/optional/prefix",
                    ));
                }
                if container.is_empty() {
                    return Err(missing(
                        "container",
                        "write it as azblob://ACCOUNT/CONTAINER/optional/prefix",
                    ));
                }
                Ok(StoreLocation::Azure {
                    account: account.to_string(),
                    container: container.to_string(),
                    prefix: clean_prefix(prefix).map_err(|r| malformed(&r))?,
                })
            }
            "file" => {
                // file:///abs/path, or file://relative/path for a laptop demo.
                if rest.is_empty() {
                    return Err(missing(
                        "path",
                        "write it as file:///absolute/path or file://relative/path",
                    ));
                }
                // A file URL is percent-encoded (RFC 8089): file:///tmp/my%20dir
                // is the directory "/tmp/my dir", as every other tool reads it.
                Ok(StoreLocation::File {
                    root: PathBuf::from(percent_decode(rest).map_err(|r| malformed(&r))?),
                })
            }
            _ => Err(StoreLocationError::UnknownScheme {
                url: crate::redact::redact_url(raw),
                scheme: scheme.to_string(),
            }),
        }
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_prefix = |f: &mut fmt::Formatter<'_>, head: String, prefix: &str| {
            if prefix.is_empty() {
                f.write_str(&head)
            } else {
                write!(f, "{head}/{prefix}")
            }
        };
        match self {
            StoreLocation::S3 { bucket, prefix } => {
                with_prefix(f, format!("s3://{bucket}"), prefix)
            }
            StoreLocation::Gcs { bucket, prefix } => {
                with_prefix(f, format!("gs://{bucket}"), prefix)
            }
            StoreLocation::Azure {
                account,
                container,
                prefix,
            } => with_prefix(f, format!("azblob://{account}/{container}"), prefix),
            StoreLocation::File { root } => {
                write!(f, "file://{}", percent_encode(&root.display().to_string()))
            }
        }
    }
}

/// Decodes `%XX` escapes of a file URL's path. A `%` not followed by two
/// hex digits is refused rather than guessed at.
fn percent_decode(path: &str) -> Result<String, String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                format!(
                    "the path has a \"%\" that is not a %XX escape (at byte {i}); write a literal % as %25"
                )
            })?;
        out.push(hex);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| "the decoded path is not UTF-8".to_string())
}

/// The inverse of [`percent_decode`] for what a store URL cannot carry
/// literally: `%`, `?` and `#` (the parser refuses queries and fragments).
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

fn split_first(s: &str) -> (&str, &str) {
    s.split_once('/').unwrap_or((s, ""))
}

fn clean_prefix(prefix: &str) -> Result<String, String> {
    let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err("the prefix must not contain \".\" or \"..\" segments".into());
    }
    Ok(parts.join("/"))
}

/// The rules S3 and GCS share for bucket names, checked early so a typo gets a
/// clear message instead of an opaque signature error from the server.
fn validate_bucket(bucket: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    let ok_ends = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "bucket name {bucket:?} is invalid: 3-63 lowercase letters, digits, '-', '.' or '_', starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<StoreLocation, StoreLocationError> {
        s.parse()
    }

    #[test]
    fn parses_each_scheme() {
        assert_eq!(
            parse("s3://my-bucket/a/b/"),
            Ok(StoreLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(
            parse("gs://bkt"),
            Ok(StoreLocation::Gcs {
                bucket: "bkt".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            parse("azblob://acct/cont/x//y"),
            Ok(StoreLocation::Azure {
                account: "acct".into(),
                container: "cont".into(),
                prefix: "x/y".into()
            })
        );
        assert_eq!(
            parse("file:///var/backups"),
            Ok(StoreLocation::File {
                root: "/var/backups".into()
            })
        );
        assert_eq!(
            parse("file://backups"),
            Ok(StoreLocation::File {
                root: "backups".into()
            })
        );
    }

    #[test]
    fn file_urls_are_percent_decoded() {
        assert_eq!(
            parse("file:///tmp/my%20dir"),
            Ok(StoreLocation::File {
                root: "/tmp/my dir".into()
            })
        );
        assert_eq!(
            parse("file:///tmp/caf%C3%A9%3F%2525"),
            Ok(StoreLocation::File {
                root: "/tmp/café?%25".into()
            })
        );
        for bad in ["file:///tmp/100%", "file:///tmp/%zz", "file:///tmp/%ff"] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("%"), "{bad}: {err}");
        }
        // What is displayed parses back to the same path.
        let odd = StoreLocation::File {
            root: "/tmp/100% done?#x".into(),
        };
        assert_eq!(parse(&odd.to_string()), Ok(odd));
    }

    #[test]
    fn display_round_trips() {
        for url in [
            "s3://bkt/a/b",
            "gs://bkt",
            "azblob://acct/cont/p",
            "file:///tmp/x",
        ] {
            assert_eq!(parse(url).expect(url).to_string(), url);
        }
    }

    #[test]
    fn rejects_bad_urls_with_a_hint() {
        assert!(matches!(
            parse("ftp://x/y"),
            Err(StoreLocationError::UnknownScheme { .. })
        ));
        assert!(matches!(
            parse("bucket/prefix"),
            Err(StoreLocationError::Malformed { .. })
        ));
        assert!(matches!(
            parse("s3:///prefix"),
            Err(StoreLocationError::Missing { what: "bucket", .. })
        ));
        assert!(matches!(
            parse("s3://Bad_Bucket!"),
            Err(StoreLocationError::Malformed { .. })
        ));
        assert!(matches!(
            parse("s3://key:secret@bucket/p"),
            Err(StoreLocationError::Extra { .. })
        ));
        assert!(matches!(
            parse("s3://bucket/p?x=1"),
            Err(StoreLocationError::Extra { .. })
        ));
        assert!(matches!(
            parse("azblob://acct"),
            Err(StoreLocationError::Missing {
                what: "container",
                ..
            })
        ));
        assert!(matches!(
            parse("s3://bkt/a/../b"),
            Err(StoreLocationError::Malformed { .. })
        ));
        let msg = parse("ftp://x")
            .expect_err("ftp is not a store")
            .to_string();
        assert!(msg.contains("s3://"), "{msg}");
    }
}
