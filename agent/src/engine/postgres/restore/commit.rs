//! The one way a restore commits: the whole artifact read and matching its
//! manifest, pg_restore and the forwarder finished cleanly, and then the
//! agent's own COMMIT, confirmed by psql.

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::forward::{join, Forwarded};
use super::psql_session::{find_last, write_all_and, COMMITTED_MARKER};
use super::rollback::{abort, finish, psql_stopped_first, Failure, NOTHING_RESTORED};
use crate::artifact::{check_integrity, read_failed, OpenArtifact};
use crate::error::{Error, Result};
use crate::manifest::{Artifact, Manifest};
use crate::pipeline::process::Running;

/// The statement pg_restore ends its single transaction with.
const COMMIT: &[u8] = b"COMMIT;\n";

/// Where feeding the archive left off.
pub(super) struct Fed {
    /// Why reading the artifact stopped before its end, if it did.
    pub(super) read_error: Option<std::io::Error>,
    pub(super) restorer: Option<Running>,
    pub(super) psql: Running,
    pub(super) forward: Option<JoinHandle<std::io::Result<Forwarded>>>,
    pub(super) forwarded: Option<Forwarded>,
}

/// The whole artifact was fed: the COMMIT only if it matched its manifest
/// and pg_restore and the forwarder finished cleanly.
pub(super) async fn conclude(
    fed: Fed,
    open: &OpenArtifact,
    manifest: &Manifest,
    artifact: &Artifact,
    failure: &Failure,
) -> Result<()> {
    let Fed {
        read_error,
        mut restorer,
        psql,
        mut forward,
        forwarded,
    } = fed;
    let integrity = match read_error {
        // A store that failed midway is the store's failure, not the backup's.
        Some(e) => Err(read_failed(manifest, artifact, &e)),
        None => check_integrity(manifest, artifact, open),
    };
    if let Err(e) = integrity {
        return Err(abort(restorer, psql, forward, Some(e), failure).await);
    }
    if let Some(Err(e)) = finish(restorer.take()).await {
        if psql_stopped_first(&mut forward).await {
            return Err(abort(None, psql, None, None, failure).await);
        }
        return Err(abort(None, psql, forward, Some(Error::target(e)), failure).await);
    }
    let forwarded = match forwarded {
        Some(f) => f,
        None => match join(forward.take()).await {
            Some(f) => f,
            None => return Err(abort(None, psql, None, None, failure).await),
        },
    };
    commit(forwarded, psql, failure).await
}

/// Sends the held SQL without pg_restore's `COMMIT`, then the agent's own,
/// followed by a marker psql prints only once the COMMIT succeeded: with it
/// the outcome is known, without it only a lost connection leaves doubt.
pub(super) async fn commit(forwarded: Forwarded, psql: Running, failure: &Failure) -> Result<()> {
    let Forwarded { mut sql_in, held } = forwarded;
    let Some(at) = find_last(&held, COMMIT) else {
        let unexpected =
            Error::target("pg_restore's SQL did not end its transaction with COMMIT as expected");
        return Err(abort(None, psql, None, Some(unexpected), failure).await);
    };
    let mut rest = held[..at].to_vec();
    rest.extend_from_slice(&held[at + COMMIT.len()..]);
    if let Ok(mut objects) = failure.objects.lock() {
        objects.feed(&rest);
        objects.mark("the final COMMIT");
    }
    let sent = async {
        write_all_and(&mut sql_in, &rest).await?;
        write_all_and(&mut sql_in, COMMIT).await?;
        write_all_and(
            &mut sql_in,
            format!("\\echo {COMMITTED_MARKER}\n").as_bytes(),
        )
        .await?;
        sql_in.shutdown().await
    }
    .await;
    drop(sql_in);
    let status = psql.wait().await;
    let said = failure.said().await;
    if said.older_server {
        return Err(failure.older_server(&said));
    }
    match (status, said.committed) {
        (_, true) => Ok(()),
        (Ok(()), false) => Err(Error::target(format!(
            "psql ended without confirming the COMMIT{}; {NOTHING_RESTORED}",
            if sent.is_err() {
                " (it stopped reading)"
            } else {
                ""
            }
        ))),
        (Err(e), false) => Err(failure.judge_psql(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::psql_session::find_last;
    use super::*;

    #[test]
    fn finds_the_final_commit() {
        let sql = b"BEGIN;\nCOMMIT;\nx\nCOMMIT;\n\n-- Completed on\n";
        assert_eq!(find_last(sql, COMMIT), Some(17));
        assert_eq!(find_last(b"BEGIN;\n", COMMIT), None);
    }
}
