//! The PKI a test control plane needs, made with the `openssl` command: a CA,
//! the API server's serving certificate (for 127.0.0.1), an admin client
//! certificate (group system:masters) and the service-account signing key.
//! ECDSA P-256 keys: quick to make, accepted by Kubernetes and rustls.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::require_binary;

pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let bin = require_binary("openssl", &[], "apt-get install openssl");
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn key(dir: &Path, name: &str) {
    // genpkey writes PKCS#8, the form every consumer reads.
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ],
    );
}

/// Signs a leaf certificate with the CA: `subject` as `/CN=../O=..`,
/// `extensions` as openssl `-extfile` lines.
fn leaf(dir: &Path, name: &str, subject: &str, extensions: &str) {
    let key_file = format!("{name}.key");
    key(dir, &key_file);
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "req", "-new", "-key", &key_file, "-subj", subject, "-out", &csr,
        ],
    );
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), extensions).expect("write extfile");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

impl Pki {
    pub fn create(dir: &Path) -> Pki {
        key(dir, "ca.key");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=vertice-test-ca",
                "-days",
                "3",
                "-out",
                "ca.crt",
            ],
        );
        leaf(
            dir,
            "apiserver",
            "/CN=kube-apiserver",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n",
        );
        leaf(
            dir,
            "admin",
            "/O=system:masters/CN=vertice-admin",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        );
        key(dir, "sa.key");
        openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        Pki {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        }
    }
}

/// A TLS acceptor serving `cert` (PEM chain) with `key` (PEM), for test
/// servers on loopback.
pub fn tls_acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("certificate")
        .collect::<Result<_, _>>()
        .expect("PEM certificate");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("TLS config");
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}
