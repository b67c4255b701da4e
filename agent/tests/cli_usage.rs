//! The command line as a user meets it, without any server: help, and bad
//! input refused with exit code 2 and a message naming the flag.
//! (This integration test also makes `cargo test --workspace` build the
//! binary the `vertice-tests` suites drive.)

use assert_cmd::Command;

fn agent() -> Command {
    let mut cmd = Command::cargo_bin("vertice-agent").expect("binary built");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

fn stderr_of(args: &[&str]) -> (i32, String) {
    let out = agent().args(args).output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_commands() {
    let out = agent().arg("--help").output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["backup", "restore", "list", "verify"] {
        assert!(text.contains(command), "{text}");
    }
}

#[test]
fn bad_input_exits_2_and_names_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "backup",
                "--source",
                "postgres://u@h/db",
                "--to",
                "ftp://bucket/x",
            ],
            "unknown scheme",
        ),
        (
            &[
                "backup",
                "--source",
                "postgres://u@h/db",
                "--to",
                "s3:/bucket",
            ],
            "--to",
        ),
        (
            &[
                "backup",
                "--source",
                "mysql://u@h/db",
                "--to",
                "file:///tmp/x",
            ],
            "--source",
        ),
        (
            &[
                "backup",
                "--source",
                "postgres://u@h",
                "--to",
                "file:///tmp/x",
            ],
            "names no database",
        ),
        (
            &[
                "backup",
                "--source",
                "postgres://u@h/db",
                "--to",
                "file:///tmp/x",
                "--compression-level",
                "40",
            ],
            "--compression-level",
        ),
        (
            &[
                "backup",
                "--source",
                "postgres://u@h/db",
                "--to",
                "file:///tmp/x",
                "--name",
                "Bad/Name",
            ],
            "--name",
        ),
        (
            &[
                "backup",
                "--source",
                "postgres://u@h/db",
                "--to",
                "file:///tmp/x",
                "--compression",
                "lz4",
            ],
            "lz4",
        ),
        (
            &[
                "restore",
                "--from",
                "file:///tmp/x",
                "--backup",
                "yesterday",
                "--to",
                "postgres://u@h/db",
            ],
            "--backup",
        ),
        (&["backup"], "--source"),
    ];
    for (args, needle) in cases {
        let (code, stderr) = stderr_of(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in {stderr}"
        );
    }
}

#[test]
fn a_password_in_a_url_is_refused_and_not_echoed() {
    let (code, stderr) = stderr_of(&[
        "backup",
        "--source",
        "postgres://app:Sup3r-Secret@db/sales",
        "--to",
        "file:///tmp/x",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("PGPASSWORD"), "{stderr}");
    assert!(!stderr.contains("Sup3r-Secret"), "{stderr}");
}
