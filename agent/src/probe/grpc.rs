//! gRPC health checking protocol v1: `grpc.health.v1.Health/Check` must
//! answer SERVING for the named service (or the server as a whole). The
//! channel goes to a checked address; the name stays the TLS server name
//! and the `:authority`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::address_policy::AddressPolicy;
use super::tcp::authority;
use super::{reasons, target, Failed};

#[derive(Debug, Clone)]
pub struct GrpcProbe {
    pub host: String,
    pub port: u16,
    pub service: String,
    pub tls: bool,
    pub policy: Arc<AddressPolicy>,
}

impl GrpcProbe {
    pub async fn check(&self, timeout: Duration) -> Result<(), Failed> {
        let addresses = target::resolve(&self.host, self.port, &self.policy).await?;
        let channel = target::first(&addresses, |address| self.connect(address, timeout))
            .await
            .map_err(|Failed(why)| {
                Failed(format!(
                    "connect {}: {why}",
                    authority(&self.host, self.port)
                ))
            })?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: self.service.clone(),
            })
            .await
            // The code is the protocol's; the message is the server's own
            // text and stays out.
            .map_err(|status| Failed(format!("Health/Check answered {:?}", status.code())))?;
        match answer.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(Failed(format!(
                "service {:?} is {}",
                self.service,
                other.as_str_name()
            ))),
        }
    }

    async fn connect(&self, address: SocketAddr, timeout: Duration) -> Result<Channel, Failed> {
        let scheme = if self.tls { "https" } else { "http" };
        let named = format!("{scheme}://{}", authority(&self.host, self.port));
        let origin = named
            .parse()
            .map_err(|_| Failed(format!("{named} is not a gRPC address")))?;
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|_| Failed(format!("{address} is not a gRPC address")))?
            .origin(origin)
            .connect_timeout(timeout)
            .timeout(timeout);
        if self.tls {
            let host = self.host.trim_start_matches('[').trim_end_matches(']');
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots().domain_name(host))
                .map_err(|e| {
                    Failed(format!(
                        "TLS: {}",
                        reasons::category(&e).unwrap_or_else(|| "configuration refused".into())
                    ))
                })?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| Failed(reasons::category(&e).unwrap_or_else(|| "cannot connect".into())))
    }
}
