//! A parallel backup: one exported snapshot; pg_dump writes everything but
//! the larger tables' data under it (the main artifact), while N workers,
//! each on its own session on the same snapshot, `COPY` those tables (or
//! block ranges of them) into parts of their own, uploaded side by side.

use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::TryStreamExt;
use tokio::io::{AsyncRead, ReadBuf};

use super::copy_reader::CopyReader;
use super::plan::{self, Piece};
use super::source::{self, Holder};
use crate::engine::common::{BackupStream, PartRequest, PartSink};
use crate::engine::postgres::dump;
use crate::engine::postgres::target::PostgresTarget;
use crate::engine::settings::BackupSettings;
use crate::error::{Error, Result};
use crate::manifest::postgres::{CopyPart, PostgresFacts};
use crate::manifest::{Producer, SourceInfo};
use crate::pipeline::redact::Redactor;
use crate::secret::Secret;

/// The format of a part's raw bytes: `COPY … TO STDOUT` text.
pub const PART_FORMAT: &str = "pg_copy-text";

/// pg_dump options that choose which tables' data to dump: with `--jobs`
/// the agent chooses, so these are refused rather than half honoured.
const SELECTING: &[&str] = &[
    "--table",
    "--exclude-table",
    "--schema",
    "--exclude-schema",
    "--exclude-table-data",
    "--table-and-children",
    "--exclude-table-and-children",
    "--exclude-table-data-and-children",
    "--filter",
    "--data-only",
    "--schema-only",
    "--snapshot",
    "--serializable-deferrable",
    "--jobs",
    "--section",
    "--no-schema",
    "--no-data",
    "--statistics-only",
    "--encoding",
    "--lock-wait-timeout",
];

/// Refuses `--pg-dump-arg`s a parallel backup cannot honour, naming them.
pub fn check_args(extra: &[String], jobs: u32) -> Result<()> {
    for arg in extra {
        let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
        if SELECTING.contains(&name) {
            return Err(Error::usage(format!(
                "--pg-dump-arg {arg}: --jobs {jobs} copies every table's data itself and cannot take {name}; use --jobs 1 for this backup"
            )));
        }
    }
    Ok(())
}

pub async fn start_backup(
    pg: &PostgresTarget,
    settings: &BackupSettings,
    redactor: &mut Redactor,
    extra: Vec<String>,
    jobs: u32,
) -> Result<BackupStream> {
    check_args(&extra, jobs)?;
    let password = crate::secret::exposed(&settings.password);
    let holder = source::export_snapshot(pg, password).await?;
    let unlogged = !extra.iter().any(|a| a == "--no-unlogged-table-data");
    let tables = source::tables(&holder, unlogged).await?;
    let ranges = holder.server_version >= 140000;
    let plan = plan::plan(tables, jobs, ranges);
    let copied: BTreeSet<(String, String)> = plan
        .pieces
        .iter()
        .map(|p| (p.table.schema.clone(), p.table.table.clone()))
        .collect();
    let copied: Vec<_> = copied.into_iter().collect();
    source::lock(&holder, &copied).await?;
    tracing::info!(
        jobs,
        snapshot = %holder.snapshot,
        parts = plan.pieces.len(),
        tables_copied = copied.len(),
        tables_in_archive = plan.in_archive.len(),
        "parallel backup: one snapshot, the larger tables copied by the workers"
    );

    let mut dump_args = extra.clone();
    dump_args.push(format!("--snapshot={}", holder.snapshot));
    // The parts are UTF8 (the agent's sessions), so is the archive; and the
    // table names in the patterns below are read as UTF8.
    dump_args.push("--encoding=UTF8".into());
    dump_args.push(format!("--lock-wait-timeout={}", source::LOCK_WAIT));
    dump_args.extend(copied.iter().map(|(s, t)| plan::exclude_data_arg(s, t)));
    let running = dump::spawn_dump(
        &settings.pg_dump,
        pg,
        &dump_args,
        password,
        redactor.clone(),
    )
    .map_err(|e| Error::usage(format!("--pg-dump: {e}")))?;
    let output = running
        .into_output()
        .map_err(|e| Error::source(e.to_string()))?;
    let holder = Arc::new(holder);
    let source = crate::engine::postgres::source_info(pg);
    // What pg_dump ran with, but the exclusions (one per part's table,
    // which the manifest lists anyway).
    let mut arguments = dump::dump_arguments(&dump_args[..dump_args.len() - copied.len()]);
    arguments.push("--exclude-table-data=<each table of source.postgres.parts>".into());
    let work = Work {
        pg: pg.clone(),
        password: settings.password.clone(),
        holder: Arc::clone(&holder),
        pieces: plan.pieces,
        jobs,
        source: source.clone(),
    };
    Ok(BackupStream {
        // pg_dump takes the snapshot up as it starts: its stream keeps the
        // holder open as long as it runs, the workers as long as they do.
        stream: Box::new(Holding {
            inner: output,
            _holder: holder,
        }),
        source,
        artifact_stem: "dump.pgdump",
        format: "pg_dump-custom",
        producer: Producer {
            tool: "pg_dump".into(),
            version: None,
            arguments,
        },
        finished: None,
        parent: None,
        parts: Some(Box::new(move |sink| tokio::spawn(work.run(sink)))),
    })
}

/// A stream that keeps the snapshot's holder open while it is read.
struct Holding<R> {
    inner: R,
    _holder: Arc<Holder>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Holding<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

const HOLDER_LOST: &str = "the connection holding the backup's snapshot and table locks closed while the tables were copied (a server restart, pg_terminate_backend, a network cut); run the backup again";

/// What the workers share.
struct Work {
    pg: PostgresTarget,
    password: Option<Secret>,
    holder: Arc<Holder>,
    pieces: Vec<Piece>,
    jobs: u32,
    source: SourceInfo,
}

impl Work {
    /// Runs the workers; the source with every part recorded, or the first
    /// failure (the others stopped by the sink's token).
    async fn run(self, sink: PartSink) -> Result<SourceInfo> {
        let Work {
            pg,
            password,
            holder,
            pieces,
            jobs,
            mut source,
        } = self;
        let queue: Arc<Mutex<VecDeque<(usize, Piece)>>> =
            Arc::new(Mutex::new(pieces.into_iter().enumerate().collect()));
        let workers = usize::try_from(jobs)
            .unwrap_or(1)
            .min(queue_len(&queue))
            .max(1);
        // The first failure in time is the cause: it is recorded before the
        // others are stopped (their errors only say they were).
        let first_error: Arc<Mutex<Option<Error>>> = Arc::default();
        let mut handles = Vec::new();
        for _ in 0..workers {
            let (pg, password, queue, sink, first_error) = (
                pg.clone(),
                password.clone(),
                Arc::clone(&queue),
                sink.clone(),
                Arc::clone(&first_error),
            );
            let snapshot = holder.snapshot.clone();
            handles.push(tokio::spawn(async move {
                let result = worker(&pg, password.as_ref(), &snapshot, &queue, &sink).await;
                match result {
                    Ok(done) => done,
                    Err(e) => {
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert(e);
                        }
                        sink.cancel.cancel();
                        Vec::new()
                    }
                }
            }));
        }
        // Its locks keep a TRUNCATE or DROP (which no snapshot hides) from
        // emptying a table while it is copied: without them the copies
        // prove nothing, so losing the holder stops the run at once.
        let watch = {
            let (holder, sink, first_error) =
                (Arc::clone(&holder), sink.clone(), Arc::clone(&first_error));
            tokio::spawn(async move {
                while !sink.cancel.is_cancelled() {
                    if holder.conn.client.is_closed() {
                        if let Ok(mut first) = first_error.lock() {
                            first.get_or_insert(Error::source(HOLDER_LOST));
                        }
                        sink.cancel.cancel();
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            })
        };
        let mut parts = Vec::new();
        for handle in handles {
            match handle.await {
                Ok(done) => parts.extend(done),
                Err(e) => {
                    sink.cancel.cancel();
                    if let Ok(mut first) = first_error.lock() {
                        first.get_or_insert(Error::source(format!("a backup worker stopped: {e}")));
                    }
                }
            }
        }
        if let Some(e) = first_error.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        if sink.cancel.is_cancelled() {
            // Stopped from outside (a signal, the main stream failing).
            return Err(Error::source("the table copies were stopped"));
        }
        watch.abort();
        if !source::still_held(&holder).await {
            return Err(Error::source(HOLDER_LOST));
        }
        parts.sort_by(|a: &CopyPart, b| a.artifact.cmp(&b.artifact));
        source.postgres = Some(PostgresFacts {
            snapshot: holder.snapshot.clone(),
            jobs,
            parts,
        });
        drop(holder);
        Ok(source)
    }
}

fn queue_len(queue: &Mutex<VecDeque<(usize, Piece)>>) -> usize {
    queue.lock().map(|q| q.len()).unwrap_or(0)
}

fn next(queue: &Mutex<VecDeque<(usize, Piece)>>) -> Option<(usize, Piece)> {
    queue.lock().ok().and_then(|mut q| q.pop_front())
}

/// One worker: a session on the snapshot, then parts from the queue until
/// it is empty, each copied straight into the sink.
async fn worker(
    pg: &PostgresTarget,
    password: Option<&Secret>,
    snapshot: &str,
    queue: &Mutex<VecDeque<(usize, Piece)>>,
    sink: &PartSink,
) -> Result<Vec<CopyPart>> {
    let conn = tokio::select! {
        conn = source::worker(pg, password.map(Secret::expose), snapshot) => conn?,
        () = sink.cancel.cancelled() => return Ok(Vec::new()),
    };
    let mut done = Vec::new();
    let mut locked = std::collections::HashSet::new();
    while let Some((index, piece)) = next(queue) {
        if sink.cancel.is_cancelled() {
            break;
        }
        let (schema, table) = (&piece.table.schema, &piece.table.table);
        let sql = plan::copy_out(&piece.table, piece.blocks);
        let start = async {
            if locked.insert((schema.clone(), table.clone())) {
                source::lock_now(&conn.client, schema, table).await?;
            }
            conn.client.copy_out(sql.as_str()).await.map_err(|e| {
                Error::source(format!(
                    "copying {schema}.{table}: {}",
                    crate::engine::postgres::connect::reason(&e)
                ))
            })
        };
        let stream = tokio::select! {
            stream = start => stream?,
            () = sink.cancel.cancelled() => {
                conn.cancel().await;
                break;
            }
        };
        let rows = Arc::new(AtomicU64::new(0));
        let reader = CopyReader::new(
            stream.map_err(|e| std::io::Error::other(crate::engine::postgres::connect::reason(&e))),
        );
        let counted = CountRows {
            inner: reader,
            rows: Arc::clone(&rows),
        };
        let artifact = (sink.put)(PartRequest {
            stem: format!("data-{:05}.copy", index + 1),
            format: PART_FORMAT,
            producer: Producer {
                tool: "vertice-agent".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
                arguments: vec![sql],
            },
            stream: Box::new(counted),
        })
        .await
        .map_err(|e| {
            e.map_message(|m| format!("{}.{}: {m}", piece.table.schema, piece.table.table))
        })?;
        done.push(CopyPart {
            artifact,
            schema: piece.table.schema.clone(),
            table: piece.table.table.clone(),
            columns: piece.table.columns.clone(),
            blocks: piece.blocks,
            rows: rows.load(Ordering::SeqCst),
        });
    }
    Ok(done)
}

/// Counts the rows of `COPY` text going by: one per newline (a value's own
/// newlines are escaped as `\n`).
struct CountRows<R> {
    inner: R,
    rows: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for CountRows<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let lines = memchr::memchr_iter(b'\n', &buf.filled()[before..]).count();
            self.rows.fetch_add(lines as u64, Ordering::Relaxed);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn selecting_options_are_refused_by_name() {
        let err = check_args(&["--exclude-table=audit.*".into()], 4).expect_err("refused");
        assert!(err.to_string().contains("--exclude-table"), "{err}");
        assert!(err.to_string().contains("--jobs 1"), "{err}");
        assert!(check_args(&["--no-owner".into(), "--no-unlogged-table-data".into()], 4).is_ok());
    }

    #[tokio::test]
    async fn rows_are_counted_as_they_go_by() {
        let rows = Arc::new(AtomicU64::new(0));
        let mut reader = CountRows {
            inner: &b"1\ta\n2\tb\\nc\n3\t\\N\n"[..],
            rows: Arc::clone(&rows),
        };
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("read");
        assert_eq!(rows.load(Ordering::SeqCst), 3);
    }
}
