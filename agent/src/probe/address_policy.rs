//! Which addresses the probe runner may connect to, set by the administrator
//! (`--probe-allowed-cidrs`, `--probe-denied-cidrs`). A failover's author
//! chooses its probe targets; without this policy she could make the runner
//! (inside the cluster network, maybe beside a cloud metadata endpoint)
//! connect anywhere for her. The policy is applied to resolved addresses,
//! never to names, so a name that resolves to a refused address is refused
//! too. Pure: the callers resolve and connect.

use std::fmt;
use std::net::IpAddr;

/// The flags the policy comes from, named in every refusal and parse error.
pub const ALLOWED_FLAG: &str = "--probe-allowed-cidrs";
pub const DENIED_FLAG: &str = "--probe-denied-cidrs";

/// Defaults: every address is allowed but link-local (where clouds put
/// their metadata endpoint, 169.254.169.254), "this network" and the
/// unspecified addresses. Loopback stays allowed: a runner probing a
/// sidecar is ordinary, and the tests run their targets on 127.0.0.1.
pub const DEFAULT_ALLOWED: &str = "0.0.0.0/0,::/0";
pub const DEFAULT_DENIED: &str = "169.254.0.0/16,fe80::/10,0.0.0.0/8,::/128,fd00:ec2::254/128,100.100.100.200/32,168.63.129.16/32";

/// An IPv4 or IPv6 network, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, or a bare address (one host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not a CIDR ({why}); write e.g. 10.0.0.0/8, 192.168.1.7 or fd00::/8"
            )
        };
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| bad("not an IP address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix must be 0-{max}")))?,
            None => max,
        };
        // Host bits set (10.0.0.1/8) are masked off rather than refused:
        // the network meant is plain, and refusing would only annoy.
        Ok(Self {
            network: mask(network, prefix),
            prefix,
        })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        address.is_ipv4() == self.network.is_ipv4() && mask(address, self.prefix) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
}

/// Allowed networks minus denied ones: denied wins.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddressPolicy {
    allowed: Vec<Cidr>,
    denied: Vec<Cidr>,
}

/// A resolved address the policy refuses; its text is a probe's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRefused(pub IpAddr);

impl fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "address {} is not allowed by the runner's {ALLOWED_FLAG}/{DENIED_FLAG}",
            self.0.to_canonical()
        )
    }
}

impl std::error::Error for AddressRefused {}

impl Default for AddressPolicy {
    /// The runner's defaults ([`DEFAULT_ALLOWED`] minus [`DEFAULT_DENIED`]).
    fn default() -> Self {
        Self::parse(DEFAULT_ALLOWED, DEFAULT_DENIED).unwrap_or_else(|_| Self::any())
    }
}

impl AddressPolicy {
    /// Parses the two flags' comma lists; errors name the flag.
    pub fn parse(allowed: &str, denied: &str) -> Result<Self, String> {
        Ok(Self {
            allowed: parse_list(allowed).map_err(|e| format!("{ALLOWED_FLAG}: {e}"))?,
            denied: parse_list(denied).map_err(|e| format!("{DENIED_FLAG}: {e}"))?,
        })
    }

    /// Every address: for `probe check`, whose user picked the target herself.
    pub fn any() -> Self {
        Self {
            allowed: vec![
                Cidr {
                    network: IpAddr::from([0, 0, 0, 0]),
                    prefix: 0,
                },
                Cidr {
                    network: IpAddr::from([0u16; 8]),
                    prefix: 0,
                },
            ],
            denied: Vec::new(),
        }
    }

    pub fn check(&self, address: IpAddr) -> Result<(), AddressRefused> {
        let inside = |list: &[Cidr]| list.iter().any(|c| c.contains(address));
        if inside(&self.allowed) && !inside(&self.denied) {
            Ok(())
        } else {
            Err(AddressRefused(address))
        }
    }

    /// Every address must pass: a name resolving to one allowed and one
    /// refused address is refused, or a connection could land on either.
    pub fn check_all(&self, addresses: &[IpAddr]) -> Result<(), AddressRefused> {
        addresses.iter().try_for_each(|a| self.check(*a))
    }
}

fn parse_list(text: &str) -> Result<Vec<Cidr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Cidr::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn defaults_refuse_metadata_and_link_local_but_keep_loopback() {
        let policy = AddressPolicy::default();
        for refused in ["169.254.169.254", "fe80::1", "0.0.0.0", "::", "0.1.2.3"] {
            assert_eq!(
                policy.check(ip(refused)),
                Err(AddressRefused(ip(refused))),
                "{refused}"
            );
        }
        for allowed in ["127.0.0.1", "::1", "10.1.2.3", "8.8.8.8", "2001:db8::1"] {
            assert!(policy.check(ip(allowed)).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn mapped_ipv6_addresses_are_judged_as_ipv4() {
        let policy = AddressPolicy::default();
        assert!(policy.check(ip("::ffff:169.254.169.254")).is_err());
        assert!(policy.check(ip("::ffff:127.0.0.1")).is_ok());
        let text = AddressRefused(ip("::ffff:169.254.169.254")).to_string();
        assert_eq!(
            text,
            "address 169.254.169.254 is not allowed by the runner's \
             --probe-allowed-cidrs/--probe-denied-cidrs"
        );
    }

    #[test]
    fn denied_wins_over_allowed() {
        let policy = AddressPolicy::parse("10.0.0.0/8", "10.9.0.0/16").expect("policy");
        assert!(policy.check(ip("10.1.0.1")).is_ok());
        assert!(policy.check(ip("10.9.0.1")).is_err());
        assert!(policy.check(ip("192.168.0.1")).is_err(), "not allowed");
        assert!(policy.check(ip("fd00::1")).is_err(), "no IPv6 allowed");
    }

    #[test]
    fn ipv6_networks_and_single_hosts() {
        let policy = AddressPolicy::parse("fd00::/8, 192.0.2.7", "fd00:dead::/32").expect("policy");
        assert!(policy.check(ip("fd12::1")).is_ok());
        assert!(policy.check(ip("fd00:dead::1")).is_err());
        assert!(policy.check(ip("fe00::1")).is_err());
        assert!(policy.check(ip("192.0.2.7")).is_ok());
        assert!(policy.check(ip("192.0.2.8")).is_err());
        assert!(policy
            .check_all(&[ip("192.0.2.7"), ip("fd00:dead::2")])
            .is_err());
    }

    #[test]
    fn host_bits_are_masked_and_nothing_is_allowed_by_an_empty_list() {
        assert_eq!(
            Cidr::parse("10.1.2.3/8").expect("cidr").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(Cidr::parse("::1/0").expect("cidr").to_string(), "::/0");
        let none = AddressPolicy::parse("", "").expect("policy");
        assert!(none.check(ip("127.0.0.1")).is_err());
        assert!(AddressPolicy::any().check(ip("169.254.169.254")).is_ok());
    }

    #[test]
    fn parse_errors_name_the_flag_and_the_form() {
        let e = AddressPolicy::parse("10.0.0.0/33", "").expect_err("bad prefix");
        assert!(
            e.starts_with("--probe-allowed-cidrs: \"10.0.0.0/33\""),
            "{e}"
        );
        assert!(e.contains("0-32"), "{e}");
        let e = AddressPolicy::parse(DEFAULT_ALLOWED, "metadata").expect_err("not an address");
        assert!(e.starts_with("--probe-denied-cidrs: \"metadata\""), "{e}");
        assert!(e.contains("10.0.0.0/8"), "{e}");
        assert!(AddressPolicy::parse("fd00::/129", "").is_err());
        assert!(AddressPolicy::parse(DEFAULT_ALLOWED, DEFAULT_DENIED).is_ok());
    }
}
