//! Servers of the majors users run beyond the machine's own (PostgreSQL 17,
//! Valkey 8), from the Debian trixie root that `scripts/install-test-deps`
//! builds (`scripts/lib/trixie-root`). Their tools are wrapper scripts that
//! run the real binaries inside that root with the host's /tmp visible.

use std::path::PathBuf;

const INSTALL: &str = "scripts/install-test-deps (it builds the trixie root with debootstrap)";

/// The root: `VERTICE_TRIXIE_ROOT`, else the one the set-up script links.
pub fn root() -> PathBuf {
    let root = std::env::var_os("VERTICE_TRIXIE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/vertice/trixie"));
    assert!(
        root.join("host-bin/valkey-server").is_file(),
        "the trixie root for PostgreSQL 17 and Valkey 8 is missing at {}; run {INSTALL}",
        root.display()
    );
    root
}

/// The directory of wrappers (pg_dump, pg_restore, psql, initdb, postgres,
/// valkey-server, valkey-cli).
pub fn bin() -> PathBuf {
    root().join("host-bin")
}

/// `uid:gid` of the root's own `postgres` user, which runs the server.
pub fn postgres_owner() -> String {
    let passwd = std::fs::read_to_string(root().join("etc/passwd")).expect("passwd of the root");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3).then(|| format!("{}:{}", f[2], f[3]))
        })
        .expect("the root has a postgres user")
}
