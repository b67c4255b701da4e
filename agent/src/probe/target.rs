//! Resolving a probe's target under the runner's [`AddressPolicy`]: the
//! name is resolved once, every address is checked, and the probe connects
//! to those checked addresses only. Resolving again at connect time would
//! let a name that answers differently the second time (DNS rebinding)
//! slip past the check; the name itself stays for TLS (SNI, certificate)
//! and the HTTP Host header.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::address_policy::AddressPolicy;
use super::Failed;

/// The addresses of `host`, every one allowed by `policy`.
pub async fn resolve(
    host: &str,
    port: u16,
    policy: &AddressPolicy,
) -> Result<Vec<SocketAddr>, Failed> {
    let ips = lookup(host, port).await?;
    policy.check_all(&ips).map_err(|e| Failed(e.to_string()))?;
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

async fn lookup(host: &str, port: u16) -> Result<Vec<IpAddr>, Failed> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    // The resolver's own error text is the machine's, not the target's,
    // but a category is all a status needs.
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| Failed(format!("cannot resolve {host}")))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for address in found {
        if !ips.contains(&address.ip()) {
            ips.push(address.ip());
        }
    }
    if ips.is_empty() {
        return Err(Failed(format!("{host} has no address")));
    }
    Ok(ips)
}

/// Tries `connect` on each address in order; the first success, else the
/// last failure.
pub async fn first<T, F, Fut>(addresses: &[SocketAddr], mut connect: F) -> Result<T, Failed>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failed>>,
{
    let mut last = Failed::new("no address to connect to");
    for address in addresses {
        match connect(*address).await {
            Ok(done) => return Ok(done),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// reqwest's resolver for probes: the same resolve-and-check, so the HTTP
/// client connects only to checked addresses (it does not resolve again).
#[derive(Debug, Clone)]
pub struct PolicyResolver(pub Arc<AddressPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = lookup(&host, 0).await.map_err(
                |Failed(reason)| -> Box<dyn std::error::Error + Send + Sync> { reason.into() },
            )?;
            policy.check_all(&ips)?;
            // Port 0: reqwest puts the URL's port in.
            let addresses: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_resolved_address_is_checked() {
        let policy = AddressPolicy::parse("10.0.0.0/8", "").expect("policy");
        let e = resolve("127.0.0.1", 9, &policy).await.expect_err("refused");
        assert_eq!(
            e.0,
            "address 127.0.0.1 is not allowed by the runner's \
             --probe-allowed-cidrs/--probe-denied-cidrs"
        );
        let e = resolve("[::1]", 9, &policy).await.expect_err("refused");
        assert!(e.0.starts_with("address ::1 "), "{}", e.0);
        let e = resolve("localhost", 9, &policy).await.expect_err("refused");
        assert!(e.0.starts_with("address "), "{}", e.0);
        assert_eq!(
            resolve("127.0.0.1", 9, &AddressPolicy::default()).await,
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], 9))])
        );
    }

    #[tokio::test]
    async fn the_first_address_that_answers_wins() {
        let addresses = [
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 2], 2)),
        ];
        let got = first(&addresses, |a| async move {
            if a.port() == 2 {
                Ok(a)
            } else {
                Err(Failed::new("connection refused"))
            }
        })
        .await;
        assert_eq!(got, Ok(addresses[1]));
        let none: Result<(), Failed> = first(&[], |_| async { Ok(()) }).await;
        assert_eq!(none, Err(Failed::new("no address to connect to")));
    }
}
