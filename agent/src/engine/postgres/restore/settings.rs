//! Who asked for a restore and how its tools run: the flag and fixes an
//! error names ([`RestoreInto`]) and the restore's flags as plain values.

use std::path::PathBuf;

use super::super::dump::{self as postgres, Tool};
use super::super::psql_text::quote_ident;
use super::super::version::Major;
use crate::engine::settings::RestoreSettings;
use crate::error::{Error, Result};
use crate::pipeline::progress::ProgressMode;

/// Who asked for the restore: errors name that command's flag and fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreInto {
    /// `restore --to postgres://…`.
    Target,
    /// `drill --restore-to postgres://…`: a scratch database on a server
    /// the user named.
    DrillServer,
    /// `drill --restore-to ephemeral`: a server the drill started itself.
    DrillEphemeral,
}

impl RestoreInto {
    pub fn flag(self) -> &'static str {
        match self {
            RestoreInto::Target => "--to",
            RestoreInto::DrillServer | RestoreInto::DrillEphemeral => "--restore-to",
        }
    }

    pub(super) fn server(self) -> &'static str {
        match self {
            RestoreInto::Target => "the target",
            RestoreInto::DrillServer => "the drill server",
            RestoreInto::DrillEphemeral => "the drill's ephemeral server",
        }
    }

    /// What to do about a role the archive names that the server lacks.
    pub(super) fn missing_role_fix(self, role: &str) -> String {
        let create = format!("CREATE ROLE {} NOLOGIN", quote_ident(role));
        match self {
            RestoreInto::Target => format!(
                "the backup refers to role {role} (an owner, a grant, a policy or aclitem data), which the target does not have: create it there ({create}), or restore with --no-owner, which skips owners and grants (a policy or data naming the role still needs it)"
            ),
            RestoreInto::DrillServer => format!(
                "the backup refers to role {role} (a policy or aclitem data; owners and grants are skipped without --with-owner), which the drill server does not have: create it there ({create}), or drill with --restore-to ephemeral, which creates the backup's roles itself"
            ),
            RestoreInto::DrillEphemeral => format!(
                "the backup refers to role {role}, which neither its manifest nor its table of contents names, so the ephemeral server did not create it (a backup taken before agents recorded the source's roles, naming the role only in data): take a new backup, or drill with --restore-to postgres://… on a server that has the role"
            ),
        }
    }

    pub(super) fn older_server_fix(self, source: Major) -> String {
        let anyway = "or pass --allow-older-server to try anyway (nothing commits unless every statement succeeds)";
        match self {
            RestoreInto::Target => format!("restore into PostgreSQL {source} or newer, {anyway}"),
            RestoreInto::DrillServer => {
                format!("drill on a PostgreSQL {source} or newer server, {anyway}")
            }
            RestoreInto::DrillEphemeral => format!(
                "give --postgres-bin the server binaries of PostgreSQL {source} or newer (e.g. /usr/lib/postgresql/{source}/bin), {anyway}"
            ),
        }
    }
}

/// How `pg_restore` and `psql` are run: the restore's flags as plain values.
#[derive(Clone)]
pub struct PgRestoreSettings {
    pub pg_restore: PathBuf,
    /// `None`: the psql beside `pg_restore`, else the one on PATH.
    pub psql: Option<PathBuf>,
    /// Extra pg_restore options, already checked against the safe-list.
    pub extra: Vec<String>,
    pub no_owner: bool,
    pub password: Option<crate::secret::Secret>,
    pub progress: ProgressMode,
    pub into: RestoreInto,
    /// Restore into a server of an older major than the backup's source.
    pub allow_older_server: bool,
}

impl PgRestoreSettings {
    /// A plain `restore --to postgres://…`.
    pub fn for_restore(args: &RestoreSettings) -> Result<Self> {
        Ok(Self {
            pg_restore: args.pg_restore.clone(),
            psql: args.psql.clone(),
            extra: postgres::normalize(&args.pg_restore_args, "--pg-restore-arg", Tool::PgRestore)
                .map_err(Error::usage)?,
            no_owner: args.no_owner,
            password: args.password.clone(),
            progress: args.progress,
            into: RestoreInto::Target,
            allow_older_server: args.allow_older_server,
        })
    }
}
