//! Client-side encryption with age (X25519 recipients, age's STREAM format):
//! the pod that takes backups holds only public keys; restore and verify need
//! an identity. What is stored is exactly what `age -d -i key` decrypts.

use std::io;
use std::path::Path;
use std::str::FromStr;

pub use age::x25519;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_util::compat::{
    FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt, TokioAsyncReadCompatExt,
    TokioAsyncWriteCompatExt,
};

use super::checked_end::CheckedEnd;
use super::codec::BoxRead;

/// Recorded in the manifest: the format stock `age` reads.
pub const SCHEME: &str = "age-x25519";
/// Between the compressor and the encryption task.
const PIPE_BYTES: usize = 256 * 1024;

/// A short, stable name for a public key: the first 16 hex digits of the
/// SHA-256 of its `age1…` text. Public keys are not secret, but the manifest
/// only needs to tell which key opens a backup.
pub fn fingerprint(recipient: &x25519::Recipient) -> String {
    let digest = Sha256::digest(recipient.to_string().as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..16])
}

/// Parses `--encrypt-to` values: each is an `age1…` public key or a file of
/// them (one per line, `#` comments and blank lines ignored, as `age -R` reads).
pub fn parse_recipients(values: &[String]) -> Result<Vec<x25519::Recipient>, String> {
    let mut recipients = Vec::new();
    for value in values {
        let value = value.trim();
        if value.starts_with("age1") {
            recipients.push(parse_one(value, "--encrypt-to")?);
            continue;
        }
        if value.starts_with("AGE-SECRET-KEY-") {
            // Never echo it back.
            return Err("--encrypt-to was given a secret key; pass the public key (age1…) that `age-keygen -y` prints".into());
        }
        let text = std::fs::read_to_string(value).map_err(|e| {
            format!("--encrypt-to {value:?} is neither an age1… public key nor a readable recipients file ({e})")
        })?;
        let mut found = 0;
        for (number, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("AGE-SECRET-KEY-") {
                return Err(format!("--encrypt-to {value:?} holds a secret key; the backup side must only have public keys (age1…)"));
            }
            // A file's content is never echoed: it may be anything.
            let recipient = x25519::Recipient::from_str(line).map_err(|_| {
                format!(
                    "--encrypt-to file {value:?}: line {} is not an age X25519 public key (age1…)",
                    number + 1
                )
            })?;
            recipients.push(recipient);
            found += 1;
        }
        if found == 0 {
            return Err(format!("--encrypt-to file {value:?} holds no recipients"));
        }
    }
    Ok(recipients)
}

fn parse_one(text: &str, whence: &str) -> Result<x25519::Recipient, String> {
    x25519::Recipient::from_str(text)
        .map_err(|e| format!("{whence}: the value is not an age X25519 public key ({e})"))
}

/// Reads an age identity file (`age-keygen` output, one or more
/// `AGE-SECRET-KEY-…` lines). Only X25519 identities are supported.
pub fn load_identities(path: &Path, flag: &str) -> Result<Vec<x25519::Identity>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{flag} {}: cannot read the identity file ({e})",
            path.display()
        )
    })?;
    let mut identities = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The parse error never includes the line: it is a secret.
        let identity = x25519::Identity::from_str(line).map_err(|_| {
            format!(
                "{flag} {}: a line is not an age X25519 secret key (AGE-SECRET-KEY-1…)",
                path.display()
            )
        })?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(format!("{flag} {}: holds no identities", path.display()));
    }
    Ok(identities)
}

/// Which of `fingerprints` (from a manifest) these identities can open.
pub fn identities_match(identities: &[x25519::Identity], fingerprints: &[String]) -> bool {
    identities
        .iter()
        .any(|i| fingerprints.contains(&fingerprint(&i.to_public())))
}

/// Encrypts what `input` yields. A separate task drives age's writer; an
/// error on either side ends the returned stream with that error, so an
/// upload of a half-encrypted stream is aborted rather than completed.
pub fn encrypting(recipients: &[x25519::Recipient], mut input: BoxRead) -> io::Result<BoxRead> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| io::Error::other(format!("age: {e}")))?;
    // A duplex end closes when dropped, so the reader sees the end even
    // when the writer chain is dropped on an error (a simplex would not).
    let (pipe, writer) = tokio::io::duplex(PIPE_BYTES);
    let (done, outcome) = oneshot::channel();
    tokio::spawn(async move {
        let result = async {
            let age_writer = encryptor
                .wrap_async_output(TokioAsyncWriteCompatExt::compat_write(writer))
                .await?;
            let mut sink = FuturesAsyncWriteCompatExt::compat_write(age_writer);
            tokio::io::copy(&mut input, &mut sink).await?;
            // Writes the final STREAM chunk, which authenticates the end.
            sink.shutdown().await
        }
        .await;
        let _ = done.send(result);
    });
    Ok(Box::new(CheckedEnd::new(pipe, outcome)))
}

/// Why an encrypted artifact cannot be opened, in words for the operator.
pub fn describe_decrypt_error(e: &age::DecryptError) -> String {
    match e {
        age::DecryptError::NoMatchingKeys => {
            "none of the identities in --identity can decrypt it (wrong key?)".into()
        }
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            "it is not a valid age file (corrupt?)".into()
        }
        age::DecryptError::InvalidMac => "its age header is damaged (corrupt?)".into(),
        other => other.to_string(),
    }
}

/// Decrypts `input`. The header is read and matched against the identities
/// here, before anything is handed on, so a wrong key fails early; a damaged
/// or truncated body fails when read (every 64 KiB chunk is authenticated).
pub async fn decrypting<R>(
    identities: &[x25519::Identity],
    input: R,
) -> Result<BoxRead, DecryptFailure>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let decryptor = age::Decryptor::new_async_buffered(futures::io::BufReader::new(input.compat()))
        .await
        .map_err(DecryptFailure::from)?;
    let reader = decryptor
        .decrypt_async(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(DecryptFailure::from)?;
    Ok(Box::new(reader.compat()))
}

/// Why [`decrypting`] could not start.
#[derive(Debug)]
pub enum DecryptFailure {
    /// The header could not be read: the caller decides whether the store
    /// failed (`store::store_failure`) or the artifact is short, so a store
    /// dying at the first byte is not reported as a backup that cannot be
    /// decrypted.
    Read(io::Error),
    /// The header was read and refused (wrong key, damaged header).
    Refused(String),
}

impl From<age::DecryptError> for DecryptFailure {
    fn from(e: age::DecryptError) -> Self {
        match e {
            age::DecryptError::Io(e) => DecryptFailure::Read(e),
            other => DecryptFailure::Refused(describe_decrypt_error(&other)),
        }
    }
}

impl std::fmt::Display for DecryptFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecryptFailure::Read(e) => write!(f, "reading its age header failed: {e}"),
            DecryptFailure::Refused(why) => f.write_str(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn data() -> Vec<u8> {
        (0..300_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    async fn encrypt(recipients: &[x25519::Recipient], plain: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        encrypting(recipients, Box::new(std::io::Cursor::new(plain)))
            .expect("encryptor")
            .read_to_end(&mut out)
            .await
            .expect("encrypt");
        out
    }

    #[tokio::test]
    async fn round_trips_for_each_recipient() {
        let (a, b) = (x25519::Identity::generate(), x25519::Identity::generate());
        let sealed = encrypt(&[a.to_public(), b.to_public()], data()).await;
        assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
        for identity in [a, b] {
            let mut out = Vec::new();
            decrypting(&[identity], std::io::Cursor::new(sealed.clone()))
                .await
                .expect("header")
                .read_to_end(&mut out)
                .await
                .expect("decrypt");
            assert_eq!(out, data());
        }
    }

    #[tokio::test]
    async fn wrong_identity_fails_before_any_byte() {
        let sealed = encrypt(&[x25519::Identity::generate().to_public()], data()).await;
        let err = decrypting(
            &[x25519::Identity::generate()],
            std::io::Cursor::new(sealed),
        )
        .await
        .err()
        .expect("must fail");
        assert!(err.to_string().contains("wrong key"), "{err}");
    }

    #[tokio::test]
    async fn truncation_and_damage_are_detected() {
        let identity = x25519::Identity::generate();
        let sealed = encrypt(&[identity.to_public()], data()).await;
        let mut truncated = sealed.clone();
        truncated.truncate(sealed.len() - 1000);
        let mut flipped = sealed.clone();
        let middle = sealed.len() / 2;
        flipped[middle] ^= 1;
        for bad in [truncated, flipped] {
            let mut out = Vec::new();
            let result = decrypting(std::slice::from_ref(&identity), std::io::Cursor::new(bad))
                .await
                .expect("header intact")
                .read_to_end(&mut out)
                .await;
            assert!(result.is_err());
        }
    }

    #[tokio::test]
    async fn a_failing_input_fails_the_encrypted_stream() {
        struct Fails;
        impl AsyncRead for Fails {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Err(io::Error::other("pg_dump failed")))
            }
        }
        let mut out = Vec::new();
        let err = encrypting(&[x25519::Identity::generate().to_public()], Box::new(Fails))
            .expect("encryptor")
            .read_to_end(&mut out)
            .await
            .expect_err("error passes through");
        assert!(err.to_string().contains("pg_dump failed"), "{err}");
    }

    #[tokio::test]
    async fn a_store_failing_before_the_header_is_a_read_failure_not_a_refusal() {
        struct StoreDies;
        impl AsyncRead for StoreDies {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                let cut = io::Error::new(io::ErrorKind::TimedOut, "no answer");
                std::task::Poll::Ready(Err(crate::store::ReadFailure::wrap("s3://b", cut)))
            }
        }
        let identity = x25519::Identity::generate();
        match decrypting(&[identity], StoreDies).await {
            Err(DecryptFailure::Read(e)) => {
                assert!(crate::store::store_failure(&e).is_some(), "{e}")
            }
            Err(other) => panic!("not a read failure: {other}"),
            Ok(_) => panic!("decrypted nothing"),
        }
    }

    #[test]
    fn recipients_inline_and_from_files() {
        let (a, b) = (x25519::Identity::generate(), x25519::Identity::generate());
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("recipients.txt");
        std::fs::write(&file, format!("# ops team\n{}\n\n", b.to_public())).expect("write");
        let parsed = parse_recipients(&[a.to_public().to_string(), file.display().to_string()])
            .expect("parse");
        assert_eq!(parsed.len(), 2);
        assert_eq!(fingerprint(&parsed[1]), fingerprint(&b.to_public()));
        assert!(identities_match(&[b], &[fingerprint(&parsed[1])]));

        let err = parse_recipients(&["age1notakey".into()]).expect_err("bad key");
        assert!(err.contains("--encrypt-to"), "{err}");
        use age::secrecy::ExposeSecret;
        let secret = a.to_string().expose_secret().to_string();
        let err = parse_recipients(std::slice::from_ref(&secret)).expect_err("secret key refused");
        assert!(
            !err.contains(&secret[15..]),
            "the secret must not be echoed: {err}"
        );
    }

    #[test]
    fn identity_file_errors_never_show_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("key.txt");
        std::fs::write(&file, "AGE-SECRET-KEY-1NOTAREALKEYBUTSECRETLOOKING\n").expect("write");
        let err = load_identities(&file, "--identity").err().expect("bad key");
        assert!(
            err.contains("--identity") && !err.contains("SECRETLOOKING"),
            "{err}"
        );
    }
}
