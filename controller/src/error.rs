//! Reconcile errors with a bounded category: the `category` label of
//! `vertice_controller_reconcile_errors_total` and the reason of the Warning
//! event a failed reconcile records, so dashboards and alerts can tell "our
//! RBAC is wrong" from "the API server is down".

/// What kind of failure a reconcile hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// 401/403: credentials or RBAC.
    Forbidden,
    /// 404 on something that should exist.
    NotFound,
    /// 409: another writer got there first; retried.
    Conflict,
    /// 400/422: the API server refused what we sent.
    Invalid,
    /// 429/5xx or no connection: the API server is unavailable.
    Unavailable,
    /// Anything else from the client.
    Other,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::Forbidden,
        Category::NotFound,
        Category::Conflict,
        Category::Invalid,
        Category::Unavailable,
        Category::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Forbidden => "forbidden",
            Category::NotFound => "not_found",
            Category::Conflict => "conflict",
            Category::Invalid => "invalid",
            Category::Unavailable => "unavailable",
            Category::Other => "other",
        }
    }

    /// The Warning event reason for a reconcile that failed this way.
    pub fn event_reason(self) -> &'static str {
        match self {
            Category::Forbidden => "ReconcileForbidden",
            Category::NotFound => "ReconcileNotFound",
            Category::Conflict => "ReconcileConflict",
            Category::Invalid => "ReconcileInvalid",
            Category::Unavailable => "ReconcileUnavailable",
            Category::Other => "ReconcileFailed",
        }
    }

    pub fn of(error: &kube::Error) -> Category {
        match error {
            kube::Error::Api(status) => match status.code {
                401 | 403 => Category::Forbidden,
                404 => Category::NotFound,
                409 => Category::Conflict,
                400 | 422 => Category::Invalid,
                429 | 500..=599 => Category::Unavailable,
                _ => Category::Other,
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => Category::Unavailable,
            _ => Category::Other,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{action}: {}", short(source))]
pub struct Error {
    pub category: Category,
    pub action: String,
    #[source]
    pub source: kube::Error,
}

/// `map_err(kube_err("list CronJobs"))`: names the action that failed.
pub fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error {
        category: Category::of(&source),
        action,
        source,
    }
}

/// The API server's message for an API error, else the client's with every
/// cause behind it ("error sending request" alone does not say that the
/// connection was refused or timed out): enough to act on, never a `Status
/// { … }` dump.
pub fn short(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.message.is_empty() => {
            format!("the API server answered {} {}", status.code, status.reason)
        }
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => with_causes(other),
    }
}

/// A watch's failure as a sentence: kube's own text of these embeds the
/// API server's whole `Status { … }` in Debug form.
pub fn watch_error(error: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error as W;
    match error {
        W::InitialListFailed(e) => format!("cannot list: {}", short(e)),
        W::WatchStartFailed(e) => format!("cannot start the watch: {}", short(e)),
        W::WatchError(status) => format!(
            "the API server ended the watch: {} ({})",
            status.message, status.code
        ),
        W::WatchFailed(e) => format!("the watch failed: {}", short(e)),
        W::NoResourceVersion => "a watch event had no resourceVersion".into(),
    }
}

/// An error and its chain of causes, each once, joined by ": ".
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let part = c.to_string();
        // Some errors repeat their cause in their own text.
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("x", "y").with_code(code),
        ))
    }

    #[test]
    fn api_codes_map_to_categories() {
        assert_eq!(Category::of(&api(403)), Category::Forbidden);
        assert_eq!(Category::of(&api(404)), Category::NotFound);
        assert_eq!(Category::of(&api(409)), Category::Conflict);
        assert_eq!(Category::of(&api(422)), Category::Invalid);
        assert_eq!(Category::of(&api(503)), Category::Unavailable);
        assert_eq!(Category::of(&api(418)), Category::Other);
    }

    #[test]
    fn messages_are_sentences_not_dumps() {
        let e = kube_err("patch CronJob nightly")(api(422));
        let text = e.to_string();
        assert_eq!(text, "patch CronJob nightly: x (422)");
        assert!(!text.contains("Status {"), "{text}");
    }

    #[test]
    fn watch_errors_are_sentences() {
        use kube::runtime::watcher::Error as W;
        for e in [
            W::InitialListFailed(api(403)),
            W::WatchFailed(api(503)),
            W::WatchError(Box::new(
                kube::core::Status::failure("too old", "Expired").with_code(410),
            )),
        ] {
            let text = watch_error(&e);
            assert!(!text.contains("Status {"), "{text}");
            assert!(!text.contains("ErrorResponse"), "{text}");
        }
    }

    #[test]
    fn causes_are_named() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "operation timed out");
        let outer = kube::Error::Service(Box::new(io));
        let text = short(&outer);
        assert!(text.contains("operation timed out"), "{text}");
    }

    #[test]
    fn labels_and_reasons_are_distinct() {
        let labels: std::collections::BTreeSet<_> =
            Category::ALL.iter().map(|c| c.as_str()).collect();
        let reasons: std::collections::BTreeSet<_> =
            Category::ALL.iter().map(|c| c.event_reason()).collect();
        assert_eq!(labels.len(), Category::ALL.len());
        assert_eq!(reasons.len(), Category::ALL.len());
    }
}
