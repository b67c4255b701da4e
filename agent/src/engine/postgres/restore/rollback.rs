//! Every ending but the COMMIT: stopping the tools so PostgreSQL rolls the
//! transaction back, and saying why (psql's own error and the object it
//! stopped at, a corrupt artifact, an older server, a lost connection).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use super::super::dump as postgres;
use super::super::psql_text::{
    error_lines, missing_role, redact_passwords, sql_error_line, ObjectLines,
};
use super::super::version::{Major, Version};
use super::forward::{Forwarded, CHUNK};
use super::older_server::older_refusal;
use super::psql_session::PsqlSaid;
use super::settings::RestoreInto;
use crate::artifact::{check_integrity, read_failed, OpenArtifact};
use crate::error::{Error, ErrorCategory};
use crate::manifest::{Artifact, Manifest};
use crate::pipeline::process::Running;

/// How long a stopped pg_restore's output may take to drain to psql before
/// psql's part in the failure is judged.
const PSQL_VERDICT: Duration = Duration::from_secs(5);

pub(super) const NOTHING_RESTORED: &str = "the transaction was rolled back, nothing was restored";

/// What a failed restore is reported with: who asked (the flag and fixes
/// to name) and where in the SQL psql was.
pub(super) struct Failure {
    pub(super) into: RestoreInto,
    pub(super) objects: Arc<Mutex<ObjectLines>>,
    /// What psql printed, read once psql is gone.
    pub(super) said: Mutex<Option<JoinHandle<PsqlSaid>>>,
    /// The backup's source version, when psql checks the server against it.
    pub(super) older_than: Option<Version>,
    pub(super) backup_id: String,
}

impl Failure {
    pub(super) async fn said(&self) -> PsqlSaid {
        let watcher = self.said.lock().ok().and_then(|mut w| w.take());
        match watcher {
            Some(watcher) => watcher.await.unwrap_or_default(),
            None => PsqlSaid::default(),
        }
    }

    /// psql quit on an older server before any of the backup's SQL ran.
    pub(super) fn older_server(&self, said: &PsqlSaid) -> Error {
        let source = self.older_than.clone().unwrap_or(Version {
            major: Major(0, 0),
            text: "(unknown)".into(),
        });
        let target = said.server.clone().unwrap_or(Version {
            major: Major(0, 0),
            text: "an older major".into(),
        });
        older_refusal(self.into, &self.backup_id, &source, &target)
    }

    /// psql failed and never confirmed the COMMIT: with ON_ERROR_STOP (exit
    /// 3) or a failed connection the transaction cannot have committed; a
    /// connection lost later may have been lost during the COMMIT itself.
    pub(super) fn judge_psql(&self, e: String) -> Error {
        let never_connected = e.contains("connection to server") && e.contains("failed:");
        if e.contains("exit code 3") || never_connected || sql_error_line(&e).is_some() {
            self.psql_error(&e)
        } else {
            Error::target(format!(
                "{}; the connection ended while committing: the restore may or may not have committed, check the target",
                redact_passwords(&e)
            ))
        }
    }

    /// psql stopped the restore: its own error, the object it was
    /// restoring, and the fix for a role the server lacks or a part of the
    /// URL that is wrong.
    pub(super) fn psql_error(&self, reason: &str) -> Error {
        let flag = self.into.flag();
        // Only psql's own error lines: its `LINE n:` echo and a CONTEXT or
        // QUERY can quote the statement, and a statement can hold a secret
        // (`CREATE SUBSCRIPTION … CONNECTION '… password=…'`).
        let reason = &redact_passwords(&error_lines(reason));
        if let Some(line) = sql_error_line(reason) {
            let object = self.objects.lock().ok().and_then(|o| o.object_at(line));
            let at = object.map(|o| format!(" at {o}")).unwrap_or_default();
            return match missing_role(reason) {
                Some(role) => Error::usage(format!(
                    "{flag}: psql stopped{at}: {reason}; {}; {NOTHING_RESTORED}",
                    self.into.missing_role_fix(role)
                )),
                None => Error::target(format!("psql stopped{at}: {reason}; {NOTHING_RESTORED}")),
            };
        }
        match postgres::missing_object(reason) {
            Some(fix) => Error::usage(format!("{flag}: {reason}; {fix}; {NOTHING_RESTORED}")),
            None => Error::target(format!("{reason}; {NOTHING_RESTORED}")),
        }
    }
}

/// Ends the restore without committing: stops pg_restore, closes psql's
/// session (PostgreSQL rolls back the open transaction), and says why. With
/// no `cause`, psql stopped by itself, and its error is the reason.
pub(super) async fn abort(
    restorer: Option<Running>,
    mut psql: Running,
    forward: Option<JoinHandle<std::io::Result<Forwarded>>>,
    cause: Option<Error>,
    failure: &Failure,
) -> Error {
    if let Some(forward) = forward {
        forward.abort();
    }
    if let Some(mut running) = restorer {
        running.kill();
        let _ = running.wait().await;
    }
    match cause {
        Some(e) => {
            psql.kill();
            let _ = psql.wait().await;
            // Its output is closed now: the watcher ends, having noted the
            // server psql reached for the caller.
            let _ = tokio::time::timeout(PSQL_VERDICT, failure.said()).await;
            e.map_message(|m| format!("{m}; psql was stopped before COMMIT, {NOTHING_RESTORED}"))
        }
        None => {
            let reason = psql.wait().await.err();
            let said = failure.said().await;
            if said.older_server {
                return failure.older_server(&said);
            }
            failure.psql_error(&reason.unwrap_or_else(|| "psql stopped early".into()))
        }
    }
}

pub(super) async fn finish(restorer: Option<Running>) -> Option<std::result::Result<(), String>> {
    match restorer {
        Some(running) => Some(running.wait().await),
        None => None,
    }
}

/// Whether psql stopped taking SQL (the forwarder's write failed): then
/// pg_restore's failure is only its consequence. Waits a moment for the
/// forwarder, which ends once pg_restore's output is closed.
pub(super) async fn psql_stopped_first(
    forward: &mut Option<JoinHandle<std::io::Result<Forwarded>>>,
) -> bool {
    let Some(handle) = forward.as_mut() else {
        return false;
    };
    match tokio::time::timeout(PSQL_VERDICT, handle).await {
        Ok(Ok(Err(_))) => {
            *forward = None;
            true
        }
        Ok(_) => {
            *forward = None;
            false
        }
        // Still writing: psql is alive and reading (slowly).
        Err(_) => false,
    }
}

/// pg_restore failed while the archive was fed: a corrupt artifact usually
/// shows first as pg_restore failing on garbage, so say which it was when
/// finding out is cheap.
pub(super) async fn restorer_failed(
    e: String,
    open: &mut OpenArtifact,
    manifest: &Manifest,
    artifact: &Artifact,
) -> Error {
    match diagnose(open, manifest, artifact).await {
        Diagnosis::Corrupt(corrupt) => {
            Error::integrity(format!("{corrupt}; pg_restore stopped on it: {e}"))
        }
        Diagnosis::Intact => Error::target(format!(
            "{e}; the backup itself is intact (size and SHA-256 match its manifest)"
        )),
        Diagnosis::Unchecked => Error::target(format!(
            "{e}; the backup's integrity was not checked (vertice-agent verify checks it)"
        )),
        // Whether the backup or the target was at fault is unknown:
        // the store is what failed, and running again is the fix.
        Diagnosis::StoreFailed(store) => {
            store.context(format!("pg_restore stopped ({e}) and then"))
        }
    }
}

/// After pg_restore failed, at most this much more of the stored artifact
/// is read to tell a corrupt backup from a target that refused a good one;
/// past it, a refusal of a large backup is not held up reading all of it.
pub(super) const DIAGNOSE_LIMIT: u64 = 256 * 1024 * 1024;

pub(super) enum Diagnosis {
    Corrupt(String),
    Intact,
    Unchecked,
    /// The store failed while the rest was read: nothing is known.
    StoreFailed(Error),
}

pub(super) async fn diagnose(
    open: &mut OpenArtifact,
    manifest: &Manifest,
    artifact: &Artifact,
) -> Diagnosis {
    if artifact.stored_bytes.saturating_sub(open.stored.bytes()) > DIAGNOSE_LIMIT {
        return Diagnosis::Unchecked;
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        // A signal ends the diagnosis, not the report of the failure.
        let read = tokio::select! {
            read = open.reader.read(&mut buf) => read,
            () = crate::interrupt::cancelled() => return Diagnosis::Unchecked,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return match read_failed(manifest, artifact, &e) {
                    store if store.category() == ErrorCategory::Store => {
                        Diagnosis::StoreFailed(store)
                    }
                    corrupt => Diagnosis::Corrupt(corrupt.to_string()),
                }
            }
        }
    }
    match check_integrity(manifest, artifact, open) {
        Ok(()) => Diagnosis::Intact,
        Err(e) => Diagnosis::Corrupt(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::psql_text::object_of;
    use super::super::psql_session::session_preamble;
    use super::*;

    fn failure(into: RestoreInto, objects: Arc<Mutex<ObjectLines>>) -> Failure {
        Failure {
            into,
            objects,
            said: Mutex::new(None),
            older_than: None,
            backup_id: "20261127T060000Z-1a2b".into(),
        }
    }

    #[test]
    fn psql_s_error_names_the_object_it_stopped_at() {
        let mut objects = ObjectLines::after(&session_preamble(None));
        objects.feed(b"--\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n--\n\nCREATE TABLE public.t (v int);\n\n--\n-- Data for Name: t; Type: TABLE DATA; Schema: pub");
        objects.feed(b"lic; Owner: app\n--\n\nCOPY public.t (v) FROM stdin;\n1\n");
        assert_eq!(objects.object_at(6).as_deref(), Some("TABLE public.t"));
        assert_eq!(
            objects.object_at(12).as_deref(),
            Some("TABLE DATA public.t")
        );
        assert_eq!(objects.object_at(1), None, "the agent's own first line");
        objects.mark("the final COMMIT");
        assert_eq!(objects.object_at(15).as_deref(), Some("the final COMMIT"));
        assert_eq!(
            object_of(b"-- Name: EXTENSION pgcrypto; Type: COMMENT; Schema: -; Owner: "),
            Some("COMMENT EXTENSION pgcrypto".into())
        );

        let failure = failure(RestoreInto::Target, Arc::new(Mutex::new(objects)));
        let reason =
            "psql failed (exit code 3): psql:<stdin>:6: ERROR:  relation \"t\" already exists";
        assert_eq!(sql_error_line(reason), Some(6));
        let e = failure.judge_psql(reason.to_string()).to_string();
        assert!(
            e.starts_with("psql stopped at TABLE public.t: psql failed (exit code 3): psql:<stdin>:6: ERROR:  relation \"t\" already exists; the transaction was rolled back"),
            "{e}"
        );
    }

    #[test]
    fn psql_s_error_keeps_its_own_lines_and_no_secret() {
        let mut objects = ObjectLines::after("");
        objects.feed(b"--\n-- Name: s; Type: SUBSCRIPTION; Schema: -; Owner: app\n--\n\nCREATE SUBSCRIPTION s CONNECTION 'host=pub password=hunter2 dbname=app' PUBLICATION p;\n");
        objects.feed(b"--\n-- Name: USER MAPPING app SERVER files; Type: USER MAPPING; Schema: -; Owner: app\n--\n\nCREATE USER MAPPING FOR app SERVER files OPTIONS (user 'app', password 'hunter 2');\n");
        let failure = failure(RestoreInto::Target, Arc::new(Mutex::new(objects)));
        for (reason, object) in [
            (
                "psql failed (exit code 3): psql:<stdin>:5: ERROR:  could not connect to the publisher: connection to server at \"pub\" failed: FATAL:  password authentication failed for user \"app\" | LINE 1: CREATE SUBSCRIPTION s CONNECTION 'host=pub password=hunter2 dbname=app' PUBLICATION p; |                                                                      ^",
                "at SUBSCRIPTION s:",
            ),
            (
                "psql failed (exit code 3): psql:<stdin>:10: ERROR:  server \"files\" does not exist | LINE 1: CREATE USER MAPPING FOR app SERVER files OPTIONS (user 'app', password 'hunter 2'); | ^ | CONTEXT:  SQL statement \"ALTER USER MAPPING FOR app SERVER files OPTIONS (password 'hunter 2')\"",
                "at USER MAPPING USER MAPPING app SERVER files:",
            ),
        ] {
            let e = failure.judge_psql(reason.to_string());
            assert_eq!(e.category(), ErrorCategory::Target);
            let e = e.to_string();
            assert!(e.contains(object) && e.contains("ERROR:  "), "{e}");
            assert!(e.ends_with(NOTHING_RESTORED), "{e}");
            for echoed in ["hunter", "LINE 1", "CONTEXT", "CREATE "] {
                assert!(!e.contains(echoed), "{echoed}: {e}");
            }
        }
        // A connection lost while committing says what psql said, minus secrets.
        let e = failure
            .judge_psql(
                "psql failed (exit code 2): server closed the connection; password=hunter2".into(),
            )
            .to_string();
        assert!(e.contains("password=***") && !e.contains("hunter"), "{e}");
    }

    #[test]
    fn a_missing_role_in_the_sql_is_not_the_url_s_user() {
        let objects = Arc::new(Mutex::new(ObjectLines::after("")));
        let sql =
            "psql failed (exit code 3): psql:<stdin>:40: ERROR:  role \"app_role\" does not exist";
        assert_eq!(missing_role(sql), Some("app_role"));
        for (into, flag, fix) in [
            (RestoreInto::Target, "--to:", "--no-owner"),
            (
                RestoreInto::DrillServer,
                "--restore-to:",
                "--restore-to ephemeral",
            ),
            (
                RestoreInto::DrillEphemeral,
                "--restore-to:",
                "take a new backup",
            ),
        ] {
            let failure = failure(into, Arc::clone(&objects));
            let e = failure.psql_error(sql);
            assert_eq!(e.exit_code(), 2);
            let e = e.to_string();
            assert!(e.starts_with(flag) && e.contains(fix), "{e}");
            assert!(!e.contains("URL"), "{e}");
        }
        // The connection's own user is the URL's.
        let failure = failure(RestoreInto::DrillServer, objects);
        let e = failure
            .psql_error("psql: error: connection to server at \"db\" (10.0.0.1), port 5432 failed: FATAL:  role \"bob\" does not exist")
            .to_string();
        assert!(e.starts_with("--restore-to:") && e.contains("USER@"), "{e}");
    }
}
