//! PostgreSQL probe: connect, `SELECT 1`, the role from
//! `pg_is_in_recovery()`, and on a standby the replay lag. It connects to
//! checked addresses (`hostaddr`), the name kept for TLS; failures are
//! reported by SQLSTATE, never by the server's message.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use vertice_crds::failover::RequiredRole;

use super::address_policy::AddressPolicy;
use super::tcp::authority;
use super::{reasons, target, Failed};
use crate::engine::postgres::connect::{open, OpenFailed};

#[derive(Clone)]
pub struct PostgresProbe {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Option<String>,
    pub ssl_mode: SslMode,
    pub require_role: RequiredRole,
    pub max_lag: Option<Duration>,
    pub policy: Arc<AddressPolicy>,
}

/// Debug without the password: a probe may end up in a panic or a log.
impl std::fmt::Debug for PostgresProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProbe")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("ssl_mode", &self.ssl_mode)
            .field("require_role", &self.require_role)
            .field("max_lag", &self.max_lag)
            .field("policy", &self.policy)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What the server said about itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    pub in_recovery: bool,
    /// Seconds the standby's replay is behind; 0 when it has replayed all it
    /// received (an idle primary does not look like lag).
    pub lag_seconds: f64,
}

/// Parses `disable`, `prefer` or `require`: the modes of the agent's own
/// PostgreSQL connections.
pub use crate::engine::postgres::connect::ssl_mode;

const ROLE_AND_LAG: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN NOT pg_is_in_recovery() THEN 0::float8 \
          WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0::float8 \
          ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8, 0::float8) END";

impl PostgresProbe {
    pub async fn check(&self, timeout: Duration) -> Result<(), Failed> {
        let seen = self.ask(timeout).await?;
        judge(seen, self.require_role, self.max_lag)
    }

    async fn ask(&self, timeout: Duration) -> Result<Seen, Failed> {
        let addresses = target::resolve(&self.host, self.port, &self.policy).await?;
        let mut config = tokio_postgres::Config::new();
        // One host entry per checked address, each with that address as
        // `hostaddr`: tokio-postgres tries them in order and never resolves
        // the name itself, which stays the TLS server name.
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        for address in &addresses {
            config.host(host).hostaddr(address.ip());
        }
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name("vertice-probe")
            .connect_timeout(timeout)
            .ssl_mode(self.ssl_mode);
        if let Some(password) = &self.password {
            config.password(password);
        }
        let (conn, driver) = open(&config).await.map_err(|e| match e {
            OpenFailed::Tls(e) => Failed(format!("TLS: {e}")),
            OpenFailed::Postgres(e) => Failed(format!(
                "connect {}: {}",
                authority(&self.host, self.port),
                reasons::postgres(&e)
            )),
        })?;
        let client = conn.client;
        let row = client
            .query_one(ROLE_AND_LAG, &[])
            .await
            .map_err(|e| Failed(format!("role query: {}", reasons::postgres(&e))));
        driver.abort();
        let row = row?;
        let unexpected = |_| Failed::new("role query: unexpected answer from the server");
        Ok(Seen {
            in_recovery: row.try_get(0).map_err(unexpected)?,
            lag_seconds: row.try_get(1).map_err(unexpected)?,
        })
    }
}

/// Whether what the server said satisfies the check.
pub fn judge(seen: Seen, role: RequiredRole, max_lag: Option<Duration>) -> Result<(), Failed> {
    match (role, seen.in_recovery) {
        (RequiredRole::Primary, true) => {
            return Err(Failed::new(
                "is a standby (in recovery); a primary is required",
            ))
        }
        (RequiredRole::Replica, false) => {
            return Err(Failed::new("is a primary; a standby is required"))
        }
        _ => {}
    }
    if let Some(max) = max_lag {
        if seen.in_recovery && seen.lag_seconds > max.as_secs_f64() {
            return Err(Failed(format!(
                "replay lag {:.1} s exceeds {} s",
                seen.lag_seconds,
                max.as_secs()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: Seen = Seen {
        in_recovery: false,
        lag_seconds: 0.0,
    };
    const STANDBY: Seen = Seen {
        in_recovery: true,
        lag_seconds: 2.5,
    };

    #[test]
    fn roles() {
        assert!(judge(PRIMARY, RequiredRole::Primary, None).is_ok());
        assert!(judge(STANDBY, RequiredRole::Primary, None)
            .expect_err("must fail")
            .0
            .contains("standby"));
        assert!(judge(STANDBY, RequiredRole::Replica, None).is_ok());
        assert!(judge(PRIMARY, RequiredRole::Replica, None).is_err());
        assert!(judge(PRIMARY, RequiredRole::Any, None).is_ok());
        assert!(judge(STANDBY, RequiredRole::Any, None).is_ok());
    }

    #[test]
    fn lag_counts_on_a_standby_only() {
        let max = Some(Duration::from_secs(2));
        assert_eq!(
            judge(STANDBY, RequiredRole::Any, max)
                .expect_err("must fail")
                .0,
            "replay lag 2.5 s exceeds 2 s"
        );
        assert!(judge(STANDBY, RequiredRole::Any, Some(Duration::from_secs(3))).is_ok());
        assert!(judge(
            Seen {
                lag_seconds: 99.0,
                ..PRIMARY
            },
            RequiredRole::Any,
            max
        )
        .is_ok());
    }

    #[test]
    fn ssl_modes() {
        assert_eq!(ssl_mode(None), Ok(SslMode::Prefer));
        assert_eq!(ssl_mode(Some("require")), Ok(SslMode::Require));
        assert!(ssl_mode(Some("verify-full"))
            .expect_err("must fail")
            .contains("disable, prefer, require"));
    }
}
