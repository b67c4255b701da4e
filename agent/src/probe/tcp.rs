//! TCP connect: the address resolves and something accepts a connection.

use tokio::net::TcpStream;

use super::Failed;

pub async fn check(address: &str) -> Result<(), Failed> {
    TcpStream::connect(address)
        .await
        .map(drop)
        .map_err(|e| Failed(format!("connect {address}: {e}")))
}
