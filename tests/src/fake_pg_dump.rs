//! A stand-in for `pg_dump`: a shell script that writes the first bytes of
//! a custom-format archive (all the agent checks of a dump), then whatever a
//! test needs — random data, as much and as slowly as it wants, or a failure.

use std::path::Path;

/// The first bytes of a pg_dump custom-format archive (format 1.15).
pub fn archive_header() -> Vec<u8> {
    let int = |v: i64| {
        let mut out = vec![u8::from(v < 0)];
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        out
    };
    let string = |s: &str| {
        let mut out = int(s.len() as i64);
        out.extend_from_slice(s.as_bytes());
        out
    };
    let mut h = b"PGDMP".to_vec();
    h.extend_from_slice(&[1, 15, 0, 4, 8, 1, 0]);
    for v in [5, 4, 3, 27, 10, 126, 0] {
        h.extend(int(v));
    }
    for s in ["app", "16.4", "16.4"] {
        h.extend(string(s));
    }
    h
}

/// Writes `dir/pg_dump`, which prints the archive header and then runs the
/// shell snippet `then`; returns its path for `--pg-dump`.
pub fn fake_pg_dump(dir: &Path, then: &str) -> String {
    let header = dir.join("header.bin");
    std::fs::write(&header, archive_header()).expect("header");
    let script = crate::write_script(
        dir,
        "pg_dump",
        &format!("cat '{}'\n{then}", header.display()),
    );
    script.to_string_lossy().into_owned()
}
