//! Azurite (the Azure Storage emulator, npm `azurite`), blob service only,
//! on 127.0.0.1 with its well-known development account.

use std::process::Command;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{require_binary, wait_until, Server};

pub const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (not a real secret, but the agent
/// must still treat it as one).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    pub port: u16,
    _server: Server,
    _dir: tempfile::TempDir,
}

impl Azurite {
    pub fn start() -> Azurite {
        let bin = require_binary("azurite-blob", &[], "npm install -g azurite");
        let dir = tempfile::Builder::new()
            .prefix("vertice-azurite-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let log = dir.path().join("azurite.log");
        let log_file = std::fs::File::create(&log).expect("log");
        let mut server = Server::spawn(
            "azurite",
            Command::new(bin)
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("--location")
                .arg(dir.path())
                // The SDK speaks a newer API version than Azurite may know.
                .args(["--skipApiVersionCheck", "--loose", "--silent"])
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file),
        );
        wait_until("azurite", Duration::from_secs(60), || {
            server.assert_running(&log);
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Azurite {
            port,
            _server: server,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("VERTICE_AZURE_ENDPOINT", self.endpoint()),
            ("AZURE_STORAGE_KEY", ACCOUNT_KEY.to_string()),
        ]
    }

    pub fn create_container(&self, name: &str) {
        let sas = vertice_agent::store::azure_sas::account_sas(
            ACCOUNT,
            ACCOUNT_KEY,
            false,
            chrono::Utc::now(),
        )
        .expect("sas");
        let url = format!("{}/{name}?restype=container&{sas}", self.endpoint());
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .args(["-H", "x-ms-version: 2022-11-02", "-H", "Content-Length: 0"])
            .arg(url)
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(code, "201", "creating container {name}: HTTP {code}");
    }
}
