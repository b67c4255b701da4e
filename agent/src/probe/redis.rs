//! Redis / Valkey probe: PING, the role from ROLE, and on a replica the
//! link to its primary from INFO replication. It connects to checked
//! addresses only; failures are reported by error kind, never by the
//! server's message.

use std::net::SocketAddr;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
use vertice_crds::failover::RequiredRole;

use super::address_policy::AddressPolicy;
use super::tcp::authority;
use super::{reasons, target, Failed};

#[derive(Clone)]
pub struct RedisProbe {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub require_role: RequiredRole,
    pub require_replica_link: bool,
    pub policy: Arc<AddressPolicy>,
}

/// Debug without the password: a probe may end up in a panic or a log.
impl std::fmt::Debug for RedisProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisProbe")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("require_role", &self.require_role)
            .field("require_replica_link", &self.require_replica_link)
            .field("policy", &self.policy)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What the server said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `master`, `slave` or `sentinel`, as ROLE answers.
    pub role: String,
    /// `master_link_status:up` on a replica.
    pub link_up: bool,
}

impl RedisProbe {
    pub async fn check(&self) -> Result<(), Failed> {
        let seen = self.ask().await?;
        judge(&seen, self.require_role, self.require_replica_link)
    }

    async fn ask(&self) -> Result<Seen, Failed> {
        let addresses = target::resolve(&self.host, self.port, &self.policy).await?;
        let mut conn = target::first(&addresses, |address| self.connect(address))
            .await
            .map_err(|Failed(why)| {
                Failed(format!(
                    "connect {}: {why}",
                    authority(&self.host, self.port)
                ))
            })?;
        let failed = |what: &str| {
            let what = what.to_string();
            move |e: redis::RedisError| Failed(format!("{what}: {}", reasons::redis(&e)))
        };
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(failed("PING"))?;
        if pong != "PONG" {
            return Err(Failed::new("PING answered something other than PONG"));
        }
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query_async(&mut conn)
            .await
            .map_err(failed("ROLE"))?;
        let role = match role.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => return Err(Failed::new("ROLE gave no role")),
        };
        let link_up = if role == "slave" {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .map_err(failed("INFO replication"))?;
            link_status_up(&info)
        } else {
            false
        };
        Ok(Seen { role, link_up })
    }

    async fn connect(&self, address: SocketAddr) -> Result<MultiplexedConnection, Failed> {
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let info = ConnectionAddr::Tcp(address.ip().to_string(), address.port())
            .into_connection_info()
            .map_err(|e| Failed(reasons::redis(&e)))?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| Failed(reasons::redis(&e)))?;
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| Failed(reasons::redis(&e)))
    }
}

/// `master_link_status:up` in an INFO replication answer.
pub fn link_status_up(info: &str) -> bool {
    info.lines()
        .any(|l| l.trim_end() == "master_link_status:up")
}

pub fn judge(seen: &Seen, role: RequiredRole, require_link: bool) -> Result<(), Failed> {
    match (role, seen.role.as_str()) {
        (_, "sentinel") => return Err(Failed::new("is a Sentinel, not a data node")),
        (RequiredRole::Primary, "slave") => {
            return Err(Failed::new("is a replica; a primary is required"))
        }
        (RequiredRole::Replica, "master") => {
            return Err(Failed::new("is a primary; a replica is required"))
        }
        _ => {}
    }
    if seen.role == "slave" && require_link && !seen.link_up {
        return Err(Failed::new("replica's link to its primary is down"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(role: &str, link_up: bool) -> Seen {
        Seen {
            role: role.into(),
            link_up,
        }
    }

    #[test]
    fn roles_and_links() {
        assert!(judge(&seen("master", false), RequiredRole::Primary, true).is_ok());
        assert!(judge(&seen("slave", true), RequiredRole::Primary, true).is_err());
        assert!(judge(&seen("slave", true), RequiredRole::Replica, true).is_ok());
        assert!(judge(&seen("master", false), RequiredRole::Replica, true).is_err());
        assert_eq!(
            judge(&seen("slave", false), RequiredRole::Any, true)
                .expect_err("must fail")
                .0,
            "replica's link to its primary is down"
        );
        assert!(judge(&seen("slave", false), RequiredRole::Any, false).is_ok());
        assert!(judge(&seen("sentinel", false), RequiredRole::Any, false).is_err());
    }

    #[test]
    fn link_status_from_info() {
        let info =
            "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_link_status:up\r\n";
        assert!(link_status_up(info));
        assert!(!link_status_up("role:slave\r\nmaster_link_status:down\r\n"));
    }
}
