//! The one way the agent opens a PostgreSQL connection of its own (the
//! drill's statements, the ephemeral server's readiness, the failover
//! probe): TLS encrypt-only unless `sslmode=disable`, the driver spawned,
//! and the wording of what went wrong. libpq's tools (pg_dump, psql) make
//! their own connections from the URL.

use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use url::Url;

use crate::error::{Error, Result};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a cancel request may take after a signal.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(3);

/// Parses `disable`, `prefer` or `require` (the modes a connection of the
/// agent's own supports).
pub fn ssl_mode(text: Option<&str>) -> std::result::Result<SslMode, String> {
    match text.unwrap_or("prefer") {
        "disable" => Ok(SslMode::Disable),
        "prefer" => Ok(SslMode::Prefer),
        "require" => Ok(SslMode::Require),
        other => Err(format!(
            "ssl mode {other:?} is not one of disable, prefer, require"
        )),
    }
}

/// Why a connection or statement failed, in the server's words when it
/// gave any.
pub fn reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// How a connection that would not open failed.
#[derive(Debug)]
pub enum OpenFailed {
    /// The TLS client could not be set up.
    Tls(String),
    Postgres(tokio_postgres::Error),
}

/// Drives a connection until it ends.
fn spawn<F>(connection: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future + Send + 'static,
{
    tokio::spawn(async move {
        let _ = connection.await;
    })
}

/// Opens `config`'s connection and spawns its driver (which ends with the
/// connection); the returned handle may be aborted to end it early.
pub async fn open(
    config: &Config,
) -> std::result::Result<(Conn, tokio::task::JoinHandle<()>), OpenFailed> {
    if config.get_ssl_mode() == SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await.map_err(OpenFailed::Postgres)?;
        let driver = spawn(connection);
        Ok((Conn { client, tls: None }, driver))
    } else {
        let tls = super::tls::encrypt_only().map_err(|e| OpenFailed::Tls(e.to_string()))?;
        let tls = MakeRustlsConnect::new(tls);
        let (client, connection) = config
            .connect(tls.clone())
            .await
            .map_err(OpenFailed::Postgres)?;
        let driver = spawn(connection);
        Ok((
            Conn {
                client,
                tls: Some(tls),
            },
            driver,
        ))
    }
}

/// A connection of the drill's own, and what cancelling its statement
/// needs (a cancel request goes over a new connection of the same kind).
pub struct Conn {
    pub client: Client,
    tls: Option<MakeRustlsConnect>,
}

impl Conn {
    /// Asks the server to cancel the running statement; best effort.
    pub async fn cancel(&self) {
        let token = self.client.cancel_token();
        let sent = match &self.tls {
            None => tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(NoTls)).await,
            Some(tls) => {
                tokio::time::timeout(CANCEL_TIMEOUT, token.cancel_query(tls.clone())).await
            }
        };
        if !matches!(sent, Ok(Ok(()))) {
            tracing::warn!("could not cancel the drill's running statement; dropping the scratch database ends it");
        }
    }
}

/// A connection for the drill's own statements (libpq's tools do the
/// restore). sslmode disable, prefer or require. `label` names the flag
/// (and the URL the user gave) in errors.
pub async fn connect(url: &str, password: Option<&str>, label: &str) -> Result<Conn> {
    let config = config_for(url, password, label)?;
    match open(&config).await {
        Ok((conn, _driver)) => Ok(conn),
        Err(OpenFailed::Tls(e)) => Err(Error::target(format!("TLS: {e}"))),
        Err(OpenFailed::Postgres(e)) => {
            let reason = reason(&e);
            if super::dump::missing_object(&reason).is_some() || reason.contains("password") {
                Err(Error::usage(format!("{label}: {reason}")))
            } else {
                Err(Error::target(format!("{label}: {reason}")))
            }
        }
    }
}

/// The drill's own connection settings for `url`, as psql reads it.
pub fn config_for(
    url: &str,
    password: Option<&str>,
    label: &str,
) -> Result<tokio_postgres::Config> {
    let parsed = Url::parse(url).map_err(|e| Error::usage(format!("{label}: {e}")))?;
    let end = endpoint(&parsed).map_err(|e| Error::usage(format!("{label}: {e}")))?;
    let mut config = tokio_postgres::Config::new();
    match &end.host {
        Host::Socket(dir) => config.host_path(dir),
        Host::Tcp(host) => config.host(host),
    };
    config
        .port(end.port)
        .dbname(crate::engine::common::percent_decode(
            parsed.path().trim_start_matches('/'),
        ))
        .application_name("vertice-drill")
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(user) = &end.user {
        config.user(user);
    }
    // Where psql connects with `hostaddr=`, and the server settings its
    // `options=` gives the session: the drill's own checks and its DROP
    // must meet the server (and session) the restore met.
    if let Some(addr) = end.hostaddr {
        config.hostaddr(addr);
    }
    if let Some(options) = &end.options {
        config.options(options);
    }
    if let Some(p) = password {
        config.password(p);
    }
    let mode = parsed
        .query_pairs()
        .find(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.into_owned());
    let ssl = ssl_mode(mode.as_deref()).map_err(|e| {
        Error::usage(format!(
            "{label}: {e}; the drill's own connection supports these"
        ))
    })?;
    config.ssl_mode(ssl);
    Ok(config)
}

#[derive(Debug, PartialEq, Eq)]
enum Host {
    Tcp(String),
    /// libpq's `host=/dir`: a unix socket directory.
    Socket(String),
}

/// Where the drill's own connection goes: where psql goes for the same URL.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    host: Host,
    port: u16,
    user: Option<String>,
    /// libpq's `hostaddr=`: the address connected to; `host` then only
    /// names the server (TLS, a password file).
    hostaddr: Option<std::net::IpAddr>,
    /// libpq's `options=`: server settings for the session (`-c …`).
    options: Option<String>,
}

/// The URL's host, hostaddr, port, user and options as libpq reads them:
/// `?host=`, `?port=` and `?user=` win over the URL's own parts, and
/// `?hostaddr=` over the host, so the drill's statements and psql's
/// restore reach the same server as the same user.
fn endpoint(url: &Url) -> std::result::Result<Endpoint, String> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let host = param("host")
        .or_else(|| {
            url.host_str()
                .map(|h| h.trim_matches(['[', ']']).to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    if host.contains(',') {
        return Err(format!(
            "lists several hosts ({host}); the drill needs one server"
        ));
    }
    let port = match param("port") {
        Some(p) => p
            .parse()
            .map_err(|_| format!("port={p} is not a port number"))?,
        None => url.port().unwrap_or(5432),
    };
    let user = param("user").or_else(|| {
        Some(crate::engine::common::percent_decode(url.username())).filter(|u| !u.is_empty())
    });
    let hostaddr = match param("hostaddr").filter(|a| !a.is_empty()) {
        Some(a) if a.contains(',') => {
            return Err(format!(
                "lists several addresses (hostaddr={a}); the drill needs one server"
            ))
        }
        Some(a) => Some(a.parse().map_err(|_| {
            format!("hostaddr={a} is not an IP address (libpq takes a numeric address there)")
        })?),
        None => None,
    };
    Ok(Endpoint {
        host: if host.starts_with('/') {
            Host::Socket(host)
        } else {
            Host::Tcp(host)
        },
        port,
        user,
        hostaddr,
        options: param("options").filter(|o| !o.is_empty()),
    })
}

/// Query parameters a drill server's URL may not carry: the drill puts its
/// scratch database in the path (a `dbname=` would send the restore
/// elsewhere), and its own connection reads no service file.
pub fn refuse_redirects(url: &str) -> std::result::Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| e.to_string())?;
    for (key, _) in parsed.query_pairs() {
        match key.as_ref() {
            "dbname" => return Err("give the database in the URL's path, not as dbname= (the drill restores into a scratch database it names there)".into()),
            "service" => return Err("service= is not supported here: the drill's own connection reads no service file; give host, port and user in the URL".into()),
            _ => {}
        }
    }
    Ok(())
}

/// For the report: the server as the drill reached it (`db:5432`, `db
/// (10.0.0.7):5432`).
pub fn host_port(url: &str) -> String {
    let Some(end) = Url::parse(url).ok().and_then(|u| endpoint(&u).ok()) else {
        return String::new();
    };
    let host = match &end.host {
        Host::Tcp(h) | Host::Socket(h) => h.as_str(),
    };
    match end.hostaddr {
        Some(addr) => format!("{host} ({addr}):{}", end.port),
        None => format!("{host}:{}", end.port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drill_connects_where_psql_does() {
        let at = |u: &str| endpoint(&Url::parse(u).expect("url"));
        assert_eq!(
            at("postgres://drill@db:5433/postgres"),
            Ok(Endpoint {
                host: Host::Tcp("db".into()),
                port: 5433,
                user: Some("drill".into()),
                hostaddr: None,
                options: None,
            })
        );
        assert_eq!(
            at("postgres://drill@localhost:5432/postgres?host=%2Ftmp%2Fx&port=6000&user=other"),
            Ok(Endpoint {
                host: Host::Socket("/tmp/x".into()),
                port: 6000,
                user: Some("other".into()),
                hostaddr: None,
                options: None,
            })
        );
        assert_eq!(
            at("postgres://[::1]/postgres").map(|e| (e.host, e.port, e.user)),
            Ok((Host::Tcp("::1".into()), 5432, None))
        );
        assert!(at("postgres://a,b/postgres").is_err());
        assert!(at("postgres://a/postgres?host=a,b").is_err());
        assert!(at("postgres://a/postgres?port=x").is_err());
        assert!(refuse_redirects("postgres://a/postgres?dbname=shop").is_err());
        assert!(refuse_redirects("postgres://a/postgres?service=x").is_err());
        assert!(refuse_redirects("postgres://a/postgres?sslmode=require").is_ok());
    }

    #[test]
    fn hostaddr_and_options_reach_the_drill_s_own_connection() {
        let url = "postgres://drill@db.example:5433/postgres?hostaddr=10.0.0.7&options=-c%20search_path%3Dshop";
        let end = endpoint(&Url::parse(url).expect("url")).expect("endpoint");
        assert_eq!(end.host, Host::Tcp("db.example".into()));
        assert_eq!(end.hostaddr, Some("10.0.0.7".parse().expect("ip")));
        assert_eq!(end.options.as_deref(), Some("-c search_path=shop"));
        assert_eq!(host_port(url), "db.example (10.0.0.7):5433");
        let at = |u: &str| endpoint(&Url::parse(u).expect("url"));
        assert_eq!(
            at("postgres://db/postgres?hostaddr=%3A%3A1").map(|e| e.hostaddr),
            Ok(Some("::1".parse().expect("ip")))
        );
        let many = at("postgres://db/postgres?hostaddr=10.0.0.1,10.0.0.2").expect_err("refused");
        assert!(many.contains("several addresses"), "{many}");
        let named = at("postgres://db/postgres?hostaddr=db2").expect_err("refused");
        assert!(named.contains("not an IP address"), "{named}");

        let label = "--restore-to postgres://drill@db.example:5433/postgres";
        let config = config_for(url, None, label).expect("config");
        assert_eq!(
            config.get_hostaddrs(),
            &["10.0.0.7".parse::<std::net::IpAddr>().expect("ip")]
        );
        assert_eq!(config.get_options(), Some("-c search_path=shop"));
        assert_eq!(config.get_ports(), &[5433]);
        let e =
            config_for("postgres://db/postgres?hostaddr=db2", None, label).expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("--restore-to "), "{e}");
    }
}
