//! What the engines share with each other and with `engine/mod.rs`: the
//! backup stream, a stored backup to read, a drill's inputs and the steps
//! every drill records alike. A leaf: it names no engine and not the
//! `Target` dispatcher.

use std::time::Instant;

use vertice_crds::drill::DrillReport;

use super::settings::DrillSettings;
use crate::error::Result;
use crate::manifest::{Artifact, Manifest, SourceInfo};
use crate::pipeline::encryption::x25519;
use crate::store::Store;

/// A URL part (a user or database name) percent-decoded.
pub fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// A running backup: the engine's stream and what the manifest says of it.
pub struct BackupStream {
    pub stream: crate::pipeline::codec::BoxRead,
    /// The manifest's `source`, as far as it is known before the upload.
    pub source: SourceInfo,
    /// The artifact's name before the compression and encryption suffixes.
    pub artifact_stem: &'static str,
    pub format: &'static str,
    pub producer: crate::manifest::Producer,
    /// For an engine that learns what the manifest says of its source only
    /// by reading it (Kafka's per-partition counts and hashes): the source
    /// as known once the stream ended. An error means the stream is no
    /// backup, however it ended.
    pub finished: Option<tokio::task::JoinHandle<Result<SourceInfo>>>,
    /// An incremental backup: the backup it continues (the manifest's
    /// `parent`).
    pub parent: Option<String>,
    /// Streams beside the main one, each its own artifact (a parallel
    /// PostgreSQL backup's table data). The command hands the runner its
    /// pipeline into the store; the runner's handle becomes `finished`.
    pub parts: Option<PartsRunner>,
}

/// Starts an engine's part workers with the pipeline they upload through.
pub type PartsRunner =
    Box<dyn FnOnce(PartSink) -> tokio::task::JoinHandle<Result<SourceInfo>> + Send>;

/// One part for the store: the engine's stream and what its artifact says.
pub struct PartRequest {
    /// The artifact's name before the compression and encryption suffixes.
    pub stem: String,
    pub format: &'static str,
    pub producer: crate::manifest::Producer,
    pub stream: crate::pipeline::codec::BoxRead,
}

/// The command's pipeline for parts: compresses, encrypts, hashes and
/// stores a part, answering its artifact's name once the store holds all
/// of it. `cancel` stops every part at once (a sibling failed, the main
/// stream failed, a signal).
#[derive(Clone)]
pub struct PartSink {
    pub put: std::sync::Arc<
        dyn Fn(PartRequest) -> futures::future::BoxFuture<'static, Result<String>> + Send + Sync,
    >,
    pub cancel: tokio_util::sync::CancellationToken,
}

/// A backup chosen from the store, with what reading it takes.
pub struct Stored<'a> {
    pub store: &'a dyn Store,
    pub manifest: &'a Manifest,
    pub artifact: &'a Artifact,
    pub identities: Option<&'a [x25519::Identity]>,
}

impl Stored<'_> {
    /// Opens the artifact for reading: decrypted, decompressed, hashed as
    /// it is read.
    pub async fn open(&self) -> Result<crate::artifact::OpenArtifact> {
        crate::artifact::open_artifact(self.store, self.manifest, self.artifact, self.identities)
            .await
    }

    /// Reads the whole artifact and checks it against the manifest.
    pub async fn verify(&self, progress: crate::pipeline::progress::ProgressMode) -> Result<()> {
        crate::artifact::verify_artifact(
            self.store,
            self.manifest,
            self.artifact,
            self.identities,
            progress,
        )
        .await
    }
}

/// What every engine's drill works from: the verified backup and the
/// run's settings.
pub struct Drilled<'a> {
    pub args: &'a DrillSettings,
    pub backup: Stored<'a>,
}

/// Records a drill's `restore` check from what its restore step returned:
/// failed when the step failed (its error is returned, the drill stops),
/// else as `outcome` judges the value (a step may keep its target running
/// to be stopped after a restore that failed). Every drill records it so.
pub fn record_restore<T>(
    report: &mut DrillReport,
    loaded: Result<T>,
    outcome: impl FnOnce(&T) -> std::result::Result<(), String>,
) -> Result<T> {
    match loaded {
        Ok(value) => {
            report.record("restore", outcome(&value));
            Ok(value)
        }
        Err(e) => {
            report.record("restore", Err(e.to_string()));
            Err(e)
        }
    }
}

/// Times a restore into the report's `restore_seconds`.
pub async fn timed<T>(
    report: &mut DrillReport,
    restore: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    let result = restore.await;
    report.restore_seconds = Some(started.elapsed().as_secs_f64());
    result
}

/// A bounded channel of chunks and the reader the upload takes them from:
/// an engine that produces its stream in Rust (not a child process) sends
/// its bytes here, and an `Err` sent fails the upload.
pub fn chunk_channel(
    in_flight: usize,
) -> (
    tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    crate::pipeline::codec::BoxRead,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(in_flight);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        tx,
        Box::new(tokio_util::io::StreamReader::new(Box::pin(stream))),
    )
}
