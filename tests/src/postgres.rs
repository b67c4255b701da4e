//! A throwaway PostgreSQL cluster with password (SCRAM) authentication.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{is_root, require_binary, wait_until, Server};

pub const SUPERUSER: &str = "postgres";

pub struct Postgres {
    pub port: u16,
    pub password: String,
    bin: PathBuf,
    flavor: Flavor,
    server: Option<Server>,
    dir: tempfile::TempDir,
}

/// Directories holding the server binaries, newest version first.
fn server_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by(|a, b| {
        let v = |p: &PathBuf| {
            p.parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        };
        v(b).cmp(&v(a))
    });
    dirs
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with_password("vertice-pg-Secret-7f3a")
    }

    pub fn start_with_password(password: &str) -> Postgres {
        let initdb = require_binary(
            "initdb",
            &server_bin_dirs(),
            "apt-get install -y postgresql",
        );
        let bin = initdb.parent().map(PathBuf::from).unwrap_or_default();
        Self::start_from(bin, password, Flavor::Machine)
    }

    /// PostgreSQL 17 from the trixie root (see [`crate::trixie`]).
    pub fn start_17() -> Postgres {
        Self::start_from(
            crate::trixie::bin(),
            "vertice-pg17-Secret-2c9d",
            Flavor::Trixie,
        )
    }

    fn start_from(bin: PathBuf, password: &str, flavor: Flavor) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("vertice-pg-")
            .tempdir()
            .expect("tempdir");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, password).expect("write pwfile");
        // initdb refuses to run as root: hand the directory to postgres.
        flavor.own(dir.path());
        let data = dir.path().join("data");
        let out = flavor
            .as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&pwfile);
        Self::launch(bin, password, flavor, dir)
    }

    /// Starts the server on `dir/data` (made by initdb or pg_basebackup).
    fn launch(bin: PathBuf, password: &str, flavor: Flavor, dir: tempfile::TempDir) -> Postgres {
        let data = dir.path().join("data");
        let port = free_port();
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log");
        let mut server = Server::spawn(
            "postgres",
            flavor
                .as_server_user(&bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file),
        );
        // Field order matters: the server stops before its directory is removed.
        let mut pg = Postgres {
            port,
            password: password.to_string(),
            bin,
            flavor,
            server: None,
            dir,
        };
        wait_until("postgres", Duration::from_secs(30), || {
            server.assert_running(&log);
            pg.try_psql("postgres", "select 1")
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
        pg.server = Some(server);
        pg
    }

    /// A streaming-replication standby of this server: `pg_basebackup -R`
    /// from it over loopback, then started read-only on its own port.
    pub fn start_replica(&self) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("vertice-pg-standby-")
            .tempdir()
            .expect("tempdir");
        self.flavor.own(dir.path());
        let out = self
            .flavor
            .as_server_user(&self.bin.join("pg_basebackup"))
            .env("PGPASSWORD", &self.password)
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                SUPERUSER,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-D")
            .arg(dir.path().join("data"))
            .output()
            .expect("pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::launch(self.bin.clone(), &self.password, self.flavor, dir)
    }

    /// Stops the server (SIGKILL, as a crash); `dir` stays until drop.
    pub fn stop(&mut self) {
        self.server.take();
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    fn psql_command(&self, db: &str) -> Command {
        let mut c = Command::new("psql");
        c.env("PGPASSWORD", &self.password)
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                SUPERUSER,
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db);
        c
    }

    /// Starts SQL in the background (a statement that will wait on a lock).
    pub fn spawn_psql(&self, db: &str, sql: &str) -> std::process::Child {
        self.psql_command(db)
            .arg("-c")
            .arg(sql)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("psql")
    }

    fn try_psql(&self, db: &str, sql: &str) -> std::io::Result<Output> {
        self.psql_command(db).arg("-c").arg(sql).output()
    }

    /// Runs SQL, failing the test on error; returns unaligned tuples output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .psql_command(db)
            .args(["-A", "-t"])
            .arg("-c")
            .arg(sql)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql failed: {}\n{sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a multi-statement script.
    pub fn script(&self, db: &str, sql: &str) {
        let path = self
            .dir
            .path()
            .join(format!("script-{}.sql", std::process::id()));
        std::fs::write(&path, sql).expect("write script");
        let out = self
            .psql_command(db)
            .arg("-f")
            .arg(&path)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Tables in the public schema, comma-separated (empty for none): what a
    /// failed restore must leave as it was.
    pub fn public_tables(&self, db: &str) -> String {
        self.psql(
            db,
            "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_tables WHERE schemaname = 'public'",
        )
    }

    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// A plain-text dump used to compare two databases: everything but the
    /// lines that name the database or the dump's own versions.
    pub fn schema_and_data(&self, db: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .env("PGPASSWORD", &self.password)
            .args(["-h", "127.0.0.1", "-U", SUPERUSER, "--no-comments"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg(db)
            .output()
            .expect("pg_dump");
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                !l.starts_with("-- Dumped")
                    && !l.starts_with("\\restrict")
                    && !l.starts_with("\\unrestrict")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn pg_bin(&self, tool: &str) -> PathBuf {
        self.bin.join(tool)
    }
}

/// Where the server binaries come from.
#[derive(Clone, Copy)]
enum Flavor {
    /// The machine's own packages, started as its `postgres` user.
    Machine,
    /// The trixie root's wrappers, which switch to the root's user themselves.
    Trixie,
}

impl Flavor {
    /// Hands `dir` to the server's user when we run as root (initdb and
    /// pg_basebackup refuse root; the server needs its data directory).
    fn own(self, dir: &std::path::Path) {
        if !is_root() {
            return;
        }
        let owner = match self {
            Flavor::Machine => "postgres:postgres".to_string(),
            Flavor::Trixie => crate::trixie::postgres_owner(),
        };
        let status = Command::new("chown")
            .arg("-R")
            .arg(owner)
            .arg(dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown to postgres failed");
    }

    fn as_server_user(self, program: &std::path::Path) -> Command {
        match self {
            Flavor::Machine => as_server_user(program),
            Flavor::Trixie => Command::new(program),
        }
    }
}

fn as_server_user(program: &std::path::Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}
