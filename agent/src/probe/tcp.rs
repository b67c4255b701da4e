//! TCP connect: the address resolves to allowed addresses and something
//! accepts a connection on one of them.

use std::sync::Arc;

use super::address_policy::AddressPolicy;
use super::{reasons, target, Failed};

#[derive(Debug, Clone)]
pub struct TcpProbe {
    pub host: String,
    pub port: u16,
    pub policy: Arc<AddressPolicy>,
}

impl TcpProbe {
    pub async fn check(&self) -> Result<(), Failed> {
        let addresses = target::resolve(&self.host, self.port, &self.policy).await?;
        target::first(&addresses, |address| async move {
            tokio::net::TcpStream::connect(address)
                .await
                .map(drop)
                .map_err(|e| Failed(reasons::io_category(e.kind()).to_string()))
        })
        .await
        .map_err(|Failed(why)| Failed(format!("connect {}: {why}", self.authority())))
    }

    fn authority(&self) -> String {
        authority(&self.host, self.port)
    }
}

/// `host:port`, an IPv6 address in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(port: u16, policy: AddressPolicy) -> TcpProbe {
        TcpProbe {
            host: "127.0.0.1".into(),
            port,
            policy: Arc::new(policy),
        }
    }

    #[tokio::test]
    async fn connects_to_allowed_addresses_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        assert_eq!(probe(port, AddressPolicy::default()).check().await, Ok(()));
        let no_loopback = AddressPolicy::parse("0.0.0.0/0", "127.0.0.0/8").expect("policy");
        assert_eq!(
            probe(port, no_loopback)
                .check()
                .await
                .expect_err("refused")
                .0,
            "address 127.0.0.1 is not allowed by the runner's \
             --probe-allowed-cidrs/--probe-denied-cidrs"
        );
        drop(listener);
        assert_eq!(
            probe(port, AddressPolicy::default())
                .check()
                .await
                .expect_err("closed")
                .0,
            format!("connect 127.0.0.1:{port}: connection refused")
        );
    }
}
