//! Runs the real `vertice-agent` binary, as a user would.

use std::path::PathBuf;
use std::process::Command;

pub struct Agent {
    pub bin: PathBuf,
}

#[derive(Debug)]
pub struct RunOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "agent failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent {
    /// The binary cargo built next to this test (target/<profile>/vertice-agent),
    /// or `VERTICE_AGENT_BIN`.
    pub fn new() -> Agent {
        let bin = std::env::var_os("VERTICE_AGENT_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let exe = std::env::current_exe().expect("test executable path");
                // target/<profile>/deps/<test> → target/<profile>/vertice-agent
                exe.parent()
                    .and_then(|p| p.parent())
                    .map(|p| p.join("vertice-agent"))
                    .expect("target dir")
            });
        assert!(
            bin.is_file(),
            "{} is missing; run `cargo build -p vertice-agent` (cargo test --workspace builds it)",
            bin.display()
        );
        Agent { bin }
    }

    /// A command with a clean environment: only PATH, HOME and what the test adds.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("VERTICE_PROGRESS", "off");
        c
    }

    pub fn run(&self, args: &[&str], env: &[(&str, String)]) -> RunOutput {
        let mut c = self.command();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run vertice-agent");
        RunOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
