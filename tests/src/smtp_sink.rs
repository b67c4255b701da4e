//! A real SMTP server (PyPI `aiosmtpd`) on loopback that delivers every
//! message into a Maildir.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{wait_until, Server};

pub struct SmtpSink {
    pub port: u16,
    maildir: PathBuf,
    _server: Server,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let available = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(available, "aiosmtpd is missing: python3 -m pip install aiosmtpd==1.4.6 (scripts/install-test-deps does it)");
        let dir = tempfile::Builder::new()
            .prefix("vertice-smtp-")
            .tempdir()
            .expect("tempdir");
        let maildir = dir.path().join("Maildir");
        let port = free_port();
        let log = dir.path().join("smtp.log");
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("smtp.err")).expect("log"));
        let mut server = Server::spawn("aiosmtpd", &mut cmd);
        wait_until("aiosmtpd", Duration::from_secs(20), || {
            server.assert_running(&log);
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        SmtpSink {
            port,
            maildir,
            _server: server,
            _dir: dir,
        }
    }

    /// Every message delivered so far, raw.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            for entry in std::fs::read_dir(self.maildir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        out
    }
}
