//! gRPC health checking protocol v1: `grpc.health.v1.Health/Check` must
//! answer SERVING for the named service (or the server as a whole).

use std::time::Duration;

use tonic::transport::{ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::Failed;

#[derive(Debug, Clone)]
pub struct GrpcProbe {
    pub address: String,
    pub service: String,
    pub tls: bool,
}

impl GrpcProbe {
    pub async fn check(&self, timeout: Duration) -> Result<(), Failed> {
        let scheme = if self.tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", self.address))
            .map_err(|e| Failed(format!("{} is not a gRPC address: {e}", self.address)))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if self.tls {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|e| Failed(format!("TLS: {e}")))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            Failed(format!(
                "connect {}: {}",
                self.address,
                super::http::chain(&e)
            ))
        })?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: self.service.clone(),
            })
            .await
            .map_err(|status| {
                Failed(format!(
                    "Health/Check: {:?}: {}",
                    status.code(),
                    status.message()
                ))
            })?;
        match answer.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(Failed(format!(
                "service {:?} is {}",
                self.service,
                other.as_str_name()
            ))),
        }
    }
}
