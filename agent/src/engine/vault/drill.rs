//! A Vault / OpenBao drill: the raft snapshot's structure, read end to end.
//! A snapshot is a gzip'd tar of `meta.json` (index, term, size of the
//! state), `state.bin` (the FSM state) and `SHA256SUMS` (of both, plus a
//! sealed copy Vault checks on restore). With a `bao` (or `vault`) binary
//! at hand, the snapshot is then installed into a throwaway server
//! ([`super::throwaway_bao`]) the way a real restore installs it; reading
//! its secrets would need the source cluster's unseal keys, which a drill
//! pod must not hold.

use std::collections::BTreeMap;

use async_compression::tokio::bufread::GzipDecoder;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use vertice_crds::drill::DrillReport;

use super::throwaway_bao::{find_server, ThrowawayBao};
use crate::artifact::NoteStoreFailure;
use crate::engine::common::{record_restore, timed, Drilled};
use crate::error::Result;

/// `meta.json` and `SHA256SUMS` are small; more than this is not a snapshot.
const MAX_SMALL_FILE: u64 = 16 << 20;

#[derive(Debug, Default)]
struct Read {
    /// name → (size, SHA-256 hex)
    files: BTreeMap<String, (u64, String)>,
    meta: Option<Vec<u8>>,
    sums: Option<Vec<u8>>,
}

pub async fn drill(d: &Drilled<'_>, report: &mut DrillReport) -> Result<()> {
    let server = find_server(&d.args.bao_server)?;
    structure(d, report).await?;
    let Some(bin) = server else {
        return Ok(());
    };
    if report.checks_failed > 0 {
        // A snapshot that is not whole is not worth a server.
        return Ok(());
    }
    report.target = Some(format!("a throwaway {} on loopback", bin.display()));
    let installed = timed(report, async {
        let bao = ThrowawayBao::start(&bin).await?;
        let restored = match d.backup.open().await {
            Ok(open) => bao.restore(open.reader).await,
            Err(e) => Err(e),
        };
        Ok((bao, restored))
    })
    .await;
    // A snapshot the server refused is recorded, and the server still stopped.
    let (bao, restored) = record_restore(report, installed, |(_, restored)| {
        restored.as_ref().map(|_| ()).map_err(|e| e.to_string())
    })?;
    if restored.is_ok() {
        report.record("snapshot state installed", bao.check_installed().await);
    }
    let stopped = bao.stop().await;
    match (restored, stopped) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(why)) => Err(crate::error::Error::target(format!(
            "the drill passed but its throwaway OpenBao did not stop cleanly: {why}"
        ))),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// The snapshot read end to end: archive, checksums, metadata.
async fn structure(d: &Drilled<'_>, report: &mut DrillReport) -> Result<()> {
    report.target = Some("raft snapshot structure".into());
    let read = timed(report, async {
        let open = d.backup.open().await?;
        let (reader, store_failed) = NoteStoreFailure::wrap(open.reader);
        let read = read_snapshot(GzipDecoder::new(BufReader::new(reader))).await;
        Ok((read, store_failed))
    })
    .await?;
    let read = match read {
        (Ok(r), _) => r,
        (Err(why), store_failed) => {
            // The store failed mid-read: that says nothing about the
            // snapshot, so it is the run's `store` failure, not a check's.
            if let Some(store) = store_failed.error(d.backup.manifest, d.backup.artifact) {
                return Err(store.map_message(|m| format!("{m}; {why}")));
            }
            report.record("snapshot archive", Err(why));
            return Ok(());
        }
    };
    let missing: Vec<&str> = ["meta.json", "state.bin", "SHA256SUMS"]
        .into_iter()
        .filter(|f| !read.files.contains_key(*f))
        .collect();
    report.record(
        "snapshot archive",
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("the snapshot lacks {}", missing.join(", ")))
        },
    );
    if !missing.is_empty() {
        return Ok(());
    }
    report.record("checksums", check_sums(&read));
    report.record("metadata", check_meta(&read));
    Ok(())
}

fn check_sums(read: &Read) -> std::result::Result<(), String> {
    let text = String::from_utf8_lossy(read.sums.as_deref().unwrap_or_default()).into_owned();
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((sum, name)) = line.split_once(char::is_whitespace) else {
            return Err(format!("SHA256SUMS has an unreadable line: {line:?}"));
        };
        let name = name.trim().trim_start_matches('*');
        let Some((_, actual)) = read.files.get(name) else {
            return Err(format!("SHA256SUMS lists {name}, which the snapshot lacks"));
        };
        if !actual.eq_ignore_ascii_case(sum) {
            return Err(format!(
                "{name} has SHA-256 {actual}, SHA256SUMS says {sum}"
            ));
        }
        checked += 1;
    }
    for required in ["meta.json", "state.bin"] {
        if !text.lines().any(|l| l.trim_end().ends_with(required)) {
            return Err(format!("SHA256SUMS does not list {required}"));
        }
    }
    if checked == 0 {
        return Err("SHA256SUMS is empty".into());
    }
    Ok(())
}

fn check_meta(read: &Read) -> std::result::Result<(), String> {
    let meta: serde_json::Value = serde_json::from_slice(read.meta.as_deref().unwrap_or_default())
        .map_err(|e| format!("meta.json is not JSON: {e}"))?;
    let field = |k: &str| meta.get(k).and_then(serde_json::Value::as_u64);
    let (Some(index), Some(term)) = (field("Index"), field("Term")) else {
        return Err("meta.json has no raft Index and Term".into());
    };
    if index == 0 || term == 0 {
        return Err(format!(
            "meta.json says index {index}, term {term}: an empty raft log"
        ));
    }
    let state = read.files.get("state.bin").map_or(0, |(size, _)| *size);
    match field("Size") {
        Some(size) if size != state => Err(format!(
            "meta.json says the state is {size} bytes; state.bin has {state}"
        )),
        _ => Ok(()),
    }
}

/// Reads every tar entry, hashing each and keeping the small ones.
async fn read_snapshot<R: AsyncRead + Unpin>(mut input: R) -> std::result::Result<Read, String> {
    let mut read = Read::default();
    let mut header = [0u8; 512];
    loop {
        input
            .read_exact(&mut header)
            .await
            .map_err(|e| format!("the snapshot is not a complete gzip'd tar: {e}"))?;
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let entry = parse_header(&header)?;
        let mut hasher = Sha256::new();
        let mut kept = Vec::new();
        let mut left = entry.size;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = input
                .read(&mut buf[..want])
                .await
                .map_err(|e| format!("reading {} in the snapshot: {e}", entry.name))?;
            if n == 0 {
                return Err(format!("the snapshot ends inside {}", entry.name));
            }
            hasher.update(&buf[..n]);
            if entry.size <= MAX_SMALL_FILE {
                kept.extend_from_slice(&buf[..n]);
            }
            left -= n as u64;
        }
        let padding = (512 - entry.size % 512) % 512;
        let mut pad = vec![0u8; padding as usize];
        input
            .read_exact(&mut pad)
            .await
            .map_err(|e| format!("the snapshot ends after {}: {e}", entry.name))?;
        if entry.regular {
            match entry.name.as_str() {
                "meta.json" => read.meta = Some(kept),
                "SHA256SUMS" => read.sums = Some(kept),
                _ => {}
            }
            read.files
                .insert(entry.name, (entry.size, hex::encode(hasher.finalize())));
        }
    }
    Ok(read)
}

struct Entry {
    name: String,
    size: u64,
    regular: bool,
}

fn parse_header(h: &[u8; 512]) -> std::result::Result<Entry, String> {
    let text = |r: std::ops::Range<usize>| {
        let field = &h[r];
        let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
        String::from_utf8_lossy(&field[..end]).trim().to_string()
    };
    let stored: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    let claimed = u32::from_str_radix(&text(148..156), 8)
        .map_err(|_| "the snapshot's tar header has no checksum".to_string())?;
    if stored != claimed {
        return Err("the snapshot's tar header checksum does not match".into());
    }
    let name = text(0..100);
    let size = u64::from_str_radix(&text(124..136), 8)
        .map_err(|_| format!("the snapshot's tar entry {name} has no size"))?;
    let regular = matches!(h[156], b'0' | 0);
    Ok(Entry {
        name,
        size,
        regular,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000644");
            let size = format!("{:011o}", data.len());
            h[124..135].copy_from_slice(size.as_bytes());
            h[156] = b'0';
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            out.extend_from_slice(&h);
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn sums(files: &[(&str, &[u8])]) -> Vec<u8> {
        files
            .iter()
            .map(|(n, d)| format!("{}  {n}\n", hex::encode(Sha256::digest(d))))
            .collect::<String>()
            .into_bytes()
    }

    #[tokio::test]
    async fn a_sound_snapshot_passes_and_a_changed_state_does_not() {
        let state = b"raft state".as_slice();
        let meta = br#"{"Index":42,"Term":3,"Size":10}"#.as_slice();
        let sum = sums(&[("meta.json", meta), ("state.bin", state)]);
        let archive = tar(&[
            ("meta.json", meta),
            ("state.bin", state),
            ("SHA256SUMS", &sum),
        ]);
        let read = read_snapshot(archive.as_slice()).await.expect("read");
        assert_eq!(check_sums(&read), Ok(()));
        assert_eq!(check_meta(&read), Ok(()));

        let archive = tar(&[
            ("meta.json", meta),
            ("state.bin", b"raft stat3"),
            ("SHA256SUMS", &sum),
        ]);
        let read = read_snapshot(archive.as_slice()).await.expect("read");
        assert!(check_sums(&read)
            .expect_err("a mismatch")
            .starts_with("state.bin has SHA-256"));

        let truncated = &tar(&[("state.bin", state)])[..600];
        assert!(read_snapshot(truncated).await.is_err());
    }
}
