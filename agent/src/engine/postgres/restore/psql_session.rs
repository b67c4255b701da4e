//! The agent's side of psql's session: the lines it sends before the
//! backup's SQL (the server's version, the older-server check) and what it
//! reads back from psql's stdout (the server reached, the refusal, the
//! confirmed COMMIT).

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::super::version::{Major, Version};
use super::older_server::{warn_older, OlderServer};
use super::settings::RestoreInto;

/// What psql prints after the agent's COMMIT succeeded.
pub(super) const COMMITTED_MARKER: &str = "vertice-agent: restore committed";
/// What psql prints first: the server it reached (psql 10 and later set
/// these variables on connecting).
const SERVER_ANSWER: &str = "vertice-agent: server ";
/// What psql prints when the server is older than the backup's source.
const OLDER_SERVER: &str = "vertice-agent: older server";

/// The first lines psql is sent: the server's version, and, when the
/// backup's source major is known (and no `--allow-older-server`), a check
/// that quits before any of pg_restore's SQL runs on an older server.
pub(super) fn session_preamble(older_than: Option<Major>) -> String {
    let mut preamble = format!("\\echo {SERVER_ANSWER}:SERVER_VERSION_NUM :SERVER_VERSION_NAME\n");
    if let Some(major) = older_than {
        preamble.push_str(&format!(
            "SELECT pg_catalog.current_setting('server_version_num')::int >= {} AS vertice_agent_new_enough \\gset\n\\if :vertice_agent_new_enough\n\\else\n\\echo {OLDER_SERVER}\n\\quit\n\\endif\n",
            major.min_num()
        ));
    }
    preamble
}

/// psql's first line (see [`session_preamble`]): `<server_version_num>
/// <server_version>`;
/// `None` from a psql that does not set the variables (before 10).
pub(super) fn parse_server_answer(line: &str) -> Option<Version> {
    let rest = line.strip_prefix(SERVER_ANSWER)?;
    let (num, text) = rest.split_once(' ')?;
    Some(Version {
        major: Major::from_num(num.parse().ok()?),
        text: text.trim().to_string(),
    })
}

/// What psql printed on its stdout (nothing but `\echo` output goes
/// there): the server it reached, whether it refused it as older, whether
/// the agent's COMMIT succeeded.
#[derive(Debug, Default)]
pub(super) struct PsqlSaid {
    pub(super) server: Option<Version>,
    pub(super) older_server: bool,
    pub(super) committed: bool,
}

/// What the watcher of psql's output compares the server it reached with,
/// when `--allow-older-server` let an older one through.
pub(super) struct Watch {
    pub(super) into: RestoreInto,
    pub(super) backup_id: String,
    /// The backup's source version, when older servers are allowed.
    pub(super) source: Option<Version>,
    pub(super) older: OlderServer,
}

impl Watch {
    pub(super) fn reached(&self, server: &Version) {
        if let Some(source) = self.source.as_ref().filter(|s| server.major < s.major) {
            warn_older(self.into, &self.backup_id, source, server);
            self.older.note(source, server);
        }
    }
}

pub(super) fn watch_psql(
    stdout: tokio::process::ChildStdout,
    watch: Watch,
) -> JoinHandle<PsqlSaid> {
    tokio::spawn(async move {
        let mut said = PsqlSaid::default();
        let mut stdout = stdout;
        let mut first_line = true;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if first_line {
                if let Some(end) = seen.iter().position(|&b| b == b'\n') {
                    said.server = parse_server_answer(&String::from_utf8_lossy(&seen[..end]));
                    if let Some(server) = &said.server {
                        watch.reached(server);
                    }
                    seen.drain(..=end);
                    first_line = false;
                }
            }
            said.older_server |= find_last(&seen, OLDER_SERVER.as_bytes()).is_some();
            if seen.len() > 8192 {
                seen.drain(..seen.len() - 4096);
            }
        }
        said.older_server |= find_last(&seen, OLDER_SERVER.as_bytes()).is_some();
        said.committed = find_last(&seen, COMMITTED_MARKER.as_bytes()).is_some();
        said
    })
}

pub(super) async fn write_all_and(
    to: &mut (impl AsyncWrite + Unpin),
    data: &[u8],
) -> std::io::Result<()> {
    to.write_all(data).await?;
    to.flush().await
}

pub(super) fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_checks_the_server_before_any_of_the_backup_s_sql() {
        assert_eq!(
            session_preamble(None),
            "\\echo vertice-agent: server :SERVER_VERSION_NUM :SERVER_VERSION_NAME\n"
        );
        let checked = session_preamble(Some(Major(17, 0)));
        assert!(
            checked.contains(">= 170000 AS vertice_agent_new_enough \\gset\n\\if :vertice_agent_new_enough\n\\else\n\\echo vertice-agent: older server\n\\quit\n\\endif\n"),
            "{checked}"
        );
        assert!(session_preamble(Some(Major(9, 6))).contains(">= 90600 "));
    }

    #[test]
    fn the_server_answer_reads_its_version() {
        assert_eq!(
            parse_server_answer("vertice-agent: server 150018 15.18 (Debian 15.18-0+deb12u1)"),
            Some(Version {
                major: Major(15, 0),
                text: "15.18 (Debian 15.18-0+deb12u1)".into()
            })
        );
        assert_eq!(
            parse_server_answer("vertice-agent: server :SERVER_VERSION_NUM :SERVER_VERSION_NAME"),
            None
        );
    }
}
