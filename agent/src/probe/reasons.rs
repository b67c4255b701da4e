//! Reasons a probe failed, as fixed categories. A probe's target is chosen
//! by the failover's author and may be any server; whatever that server
//! says (an error message, a certificate's names, a body) must not travel
//! into the status, the logs or the metrics, or a probe becomes a way to
//! read a server the author cannot reach herself. So reasons are built
//! from error *kinds* the client libraries define, never from their text.

use std::error::Error;
use std::io;

use super::address_policy::AddressRefused;

/// The category of an error chain, if any link is one we know: our own
/// address refusal, a TLS error, or an I/O error.
pub fn category(e: &(dyn Error + 'static)) -> Option<String> {
    let mut link = Some(e);
    let mut io_kind = None;
    while let Some(error) = link {
        if let Some(known) = known(error) {
            return Some(known);
        }
        if let Some(io) = error.downcast_ref::<io::Error>() {
            // The payload of a custom I/O error is not its source(): look
            // inside, where rustls and our resolver put their errors —
            // hyper wraps rustls' I/O error in another one.
            let mut payload = io.get_ref();
            while let Some(inner) = payload {
                if let Some(known) = known(inner) {
                    return Some(known);
                }
                payload = inner
                    .downcast_ref::<io::Error>()
                    .and_then(io::Error::get_ref);
            }
            io_kind.get_or_insert(io.kind());
        }
        link = error.source();
    }
    io_kind.map(|k| io_category(k).to_string())
}

/// Our address refusal, if the chain holds one: the whole reason, with
/// nothing before it that a bound could cut it off behind.
pub fn address_refused(e: &(dyn Error + 'static)) -> Option<String> {
    let mut link = Some(e);
    while let Some(error) = link {
        let inner = error
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<AddressRefused>());
        if let Some(refused) = error.downcast_ref::<AddressRefused>().or(inner) {
            return Some(refused.to_string());
        }
        link = error.source();
    }
    None
}

fn known(error: &(dyn Error + 'static)) -> Option<String> {
    if let Some(refused) = error.downcast_ref::<AddressRefused>() {
        return Some(refused.to_string());
    }
    error
        .downcast_ref::<rustls::Error>()
        .map(|tls| tls_category(tls).to_string())
}

pub fn io_category(kind: io::ErrorKind) -> &'static str {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "connection reset",
        K::UnexpectedEof => "connection closed",
        K::TimedOut | K::WouldBlock => "timed out",
        K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown => "unreachable",
        K::AddrNotAvailable => "address not available",
        K::PermissionDenied => "connection not permitted",
        K::InvalidData => "invalid data from the server",
        _ => "I/O error",
    }
}

pub fn tls_category(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "TLS certificate not trusted (unknown issuer)",
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "TLS certificate not valid for the host name"
            }
            C::Expired | C::ExpiredContext { .. } => "TLS certificate expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "TLS certificate not yet valid",
            C::Revoked => "TLS certificate revoked",
            _ => "TLS certificate refused",
        },
        rustls::Error::AlertReceived(_) => "TLS handshake refused by the server",
        rustls::Error::NoCertificatesPresented => "TLS server presented no certificate",
        _ => "TLS handshake failed",
    }
}

/// A reqwest failure: the category, else what reqwest says it was.
pub fn http(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if let Some(known) = category(e) {
        return known;
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() {
        "body not read"
    } else if e.is_decode() {
        "answer not decoded"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    what.to_string()
}

/// A PostgreSQL failure: the SQLSTATE's class (a code the protocol
/// defines, not the server's message, which may quote anything), else
/// the chain's category.
pub fn postgres(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return sqlstate(db.code().code());
    }
    if let Some(known) = category(e) {
        return known;
    }
    if e.is_closed() {
        "connection closed".into()
    } else {
        "no usable answer from the server".into()
    }
}

/// SQLSTATE codes a probe commonly meets, by name; others by code alone.
pub fn sqlstate(code: &str) -> String {
    let what = match code {
        "28P01" => "password authentication failed",
        "28000" => "authentication refused",
        "3D000" => "database does not exist",
        "57P03" => "the server is starting up or shutting down",
        "53300" => "too many connections",
        "42501" => "permission denied",
        "08P01" => "protocol violation",
        _ if code.starts_with("08") => "connection error",
        _ if code.starts_with("57") => "operator intervention",
        _ if code.starts_with("53") => "insufficient resources",
        _ => "server error",
    };
    // Codes are five characters of [0-9A-Z]; anything else is not shown.
    if code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        format!("{what} (SQLSTATE {code})")
    } else {
        what.to_string()
    }
}

/// A Redis failure: the kind the client library knows, the error codes
/// of authentication by name, never the server's message.
pub fn redis(e: &redis::RedisError) -> String {
    use redis::ErrorKind as K;
    if e.is_connection_refusal() {
        return "connection refused".into();
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    match e.kind() {
        K::AuthenticationFailed => "authentication failed".into(),
        K::Io => category(e).unwrap_or_else(|| "I/O error".into()),
        K::Server(kind) => format!("server answered {}", server_code(kind)),
        K::Extension => match e.code() {
            Some("NOAUTH") => "authentication required (NOAUTH)".into(),
            Some("WRONGPASS") => "authentication failed (WRONGPASS)".into(),
            Some("NOPERM") => "permission denied (NOPERM)".into(),
            _ => "server error".into(),
        },
        K::Parse | K::UnexpectedReturnType => "unexpected answer from the server".into(),
        _ => "client error".into(),
    }
}

fn server_code(kind: redis::ServerErrorKind) -> &'static str {
    use redis::ServerErrorKind as S;
    match kind {
        S::ResponseError => "ERR",
        S::ExecAbort => "EXECABORT",
        S::BusyLoading => "LOADING",
        S::NoScript => "NOSCRIPT",
        S::Moved => "MOVED",
        S::Ask => "ASK",
        S::TryAgain => "TRYAGAIN",
        S::ClusterDown => "CLUSTERDOWN",
        S::CrossSlot => "CROSSSLOT",
        S::MasterDown => "MASTERDOWN",
        S::ReadOnly => "READONLY",
        S::NotBusy => "NOTBUSY",
        S::NoSub => "NOSUB",
        S::NoPerm => "NOPERM",
        _ => "an error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(Box<dyn Error + Send + Sync>);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn io_errors_are_named_by_kind_not_by_text() {
        let e = io::Error::new(io::ErrorKind::ConnectionRefused, "secret-from-server");
        assert_eq!(category(&e).as_deref(), Some("connection refused"));
        let wrapped = Wrapper(Box::new(io::Error::other("secret-from-server")));
        let text = category(&wrapped).expect("category");
        assert_eq!(text, "I/O error");
    }

    #[test]
    fn tls_errors_inside_nested_io_errors_are_found() {
        // As hyper hands it over: Other(InvalidData(rustls)).
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, tls));
        assert_eq!(
            category(&nested).as_deref(),
            Some("TLS certificate not trusted (unknown issuer)")
        );
    }

    #[test]
    fn tls_errors_inside_io_errors_are_found() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = Wrapper(Box::new(io::Error::new(io::ErrorKind::InvalidData, tls)));
        assert_eq!(
            category(&e).as_deref(),
            Some("TLS certificate not trusted (unknown issuer)")
        );
        let general = rustls::Error::General("secret-from-server".into());
        assert_eq!(tls_category(&general), "TLS handshake failed");
    }

    #[test]
    fn address_refusals_keep_their_words() {
        let refused = AddressRefused("169.254.169.254".parse().expect("ip"));
        let e = Wrapper(Box::new(refused));
        assert_eq!(category(&e), Some(refused.to_string()));
        assert_eq!(address_refused(&e), Some(refused.to_string()));
        let other = Wrapper(Box::new(io::Error::other("x")));
        assert_eq!(address_refused(&other), None);
    }

    #[test]
    fn sqlstates_by_name_and_code_only() {
        assert_eq!(
            sqlstate("28P01"),
            "password authentication failed (SQLSTATE 28P01)"
        );
        assert_eq!(sqlstate("XX000"), "server error (SQLSTATE XX000)");
        assert_eq!(sqlstate("08006"), "connection error (SQLSTATE 08006)");
        // A hostile server's "code" is not echoed.
        assert_eq!(sqlstate("apiKey=abc"), "server error");
    }
}
