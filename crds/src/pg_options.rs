//! Extra `pg_dump` / `pg_restore` options (`--pg-dump-arg`, `--pg-restore-arg`,
//! a VerticeBackup's `pgDumpArgs`: the agent and the controller share this list),
//! accepted from a known-safe list only and read the way `getopt_long` reads
//! them: `--long=value`, `--long value`, `-xvalue`, `-x value` and bundled
//! short flags (`-vO`). Abbreviations (`--fil` for `--file`), positional
//! arguments (another database) and anything outside the list are refused,
//! so no option can change the archive format, the output file or the
//! connection. What passes is handed to the tool rewritten as `--long[=value]`,
//! so the tool cannot read it differently than we did.

/// One option the agent passes on.
struct Allowed {
    long: &'static str,
    short: Option<char>,
    takes_value: bool,
}

const fn flag(long: &'static str, short: Option<char>) -> Allowed {
    Allowed {
        long,
        short,
        takes_value: false,
    }
}

const fn valued(long: &'static str, short: Option<char>) -> Allowed {
    Allowed {
        long,
        short,
        takes_value: true,
    }
}

/// Selects what is dumped or how objects are written; none of these touches
/// the format, the output or the connection.
const DUMP_ALLOWED: &[Allowed] = &[
    valued("schema", Some('n')),
    valued("exclude-schema", Some('N')),
    valued("table", Some('t')),
    valued("exclude-table", Some('T')),
    valued("table-and-children", None),
    valued("exclude-table-and-children", None),
    valued("exclude-table-data", None),
    valued("exclude-table-data-and-children", None),
    valued("extension", Some('e')),
    valued("exclude-extension", None),
    valued("include-foreign-data", None),
    valued("section", None),
    valued("lock-wait-timeout", None),
    valued("encoding", Some('E')),
    valued("superuser", Some('S')),
    valued("snapshot", None),
    valued("role", None),
    valued("filter", None),
    flag("data-only", Some('a')),
    flag("schema-only", Some('s')),
    flag("blobs", Some('b')),
    flag("large-objects", None),
    flag("no-blobs", Some('B')),
    flag("no-large-objects", None),
    flag("clean", Some('c')),
    flag("if-exists", None),
    flag("create", Some('C')),
    flag("no-owner", Some('O')),
    flag("no-privileges", Some('x')),
    flag("no-acl", None),
    flag("no-comments", None),
    flag("no-publications", None),
    flag("no-security-labels", None),
    flag("no-subscriptions", None),
    flag("no-tablespaces", None),
    flag("no-toast-compression", None),
    flag("no-table-access-method", None),
    flag("no-unlogged-table-data", None),
    flag("no-synchronized-snapshots", None),
    flag("no-statistics", None),
    flag("no-data", None),
    flag("no-schema", None),
    flag("with-statistics", None),
    flag("statistics-only", None),
    flag("sequence-data", None),
    flag("quote-all-identifiers", None),
    flag("serializable-deferrable", None),
    flag("strict-names", None),
    flag("enable-row-security", None),
    flag("load-via-partition-root", None),
    flag("disable-triggers", None),
    flag("disable-dollar-quoting", None),
    flag("use-set-session-authorization", None),
    flag("verbose", Some('v')),
];

const RESTORE_ALLOWED: &[Allowed] = &[
    valued("schema", Some('n')),
    valued("exclude-schema", Some('N')),
    valued("table", Some('t')),
    valued("index", Some('I')),
    valued("function", Some('P')),
    valued("trigger", Some('T')),
    valued("section", None),
    valued("superuser", Some('S')),
    valued("role", None),
    valued("use-list", Some('L')),
    valued("filter", None),
    flag("data-only", Some('a')),
    flag("schema-only", Some('s')),
    flag("clean", Some('c')),
    flag("if-exists", None),
    flag("no-owner", Some('O')),
    flag("no-privileges", Some('x')),
    flag("no-acl", None),
    flag("no-comments", None),
    flag("no-publications", None),
    flag("no-security-labels", None),
    flag("no-subscriptions", None),
    flag("no-tablespaces", None),
    flag("no-table-access-method", None),
    flag("no-data-for-failed-tables", None),
    flag("no-statistics", None),
    flag("no-data", None),
    flag("no-schema", None),
    flag("statistics-only", None),
    flag("disable-triggers", None),
    flag("enable-row-security", None),
    flag("use-set-session-authorization", None),
    flag("strict-names", None),
    flag("verbose", Some('v')),
];

/// Options the agent sets itself or that would break the stream, named in
/// refusals (and so that an abbreviation of one is recognised as such).
const OWNED: &[&str] = &[
    "format",
    "file",
    "compress",
    "jobs",
    "dbname",
    "host",
    "port",
    "username",
    "password",
    "no-password",
    "single-transaction",
    "exit-on-error",
    "list",
    "transaction-size",
    "version",
    "help",
    "no-sync",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    PgDump,
    PgRestore,
}

impl Tool {
    fn allowed(self) -> &'static [Allowed] {
        match self {
            Tool::PgDump => DUMP_ALLOWED,
            Tool::PgRestore => RESTORE_ALLOWED,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tool::PgDump => "pg_dump",
            Tool::PgRestore => "pg_restore",
        }
    }
}

/// Parses the extra options as the tool would and returns them rewritten as
/// `--long[=value]`; the error names `flag` and the offending argument.
pub fn normalize(extra: &[String], flag: &str, tool: Tool) -> Result<Vec<String>, String> {
    let allowed = tool.allowed();
    let mut out = Vec::new();
    let mut args = extra.iter();
    let refuse = |arg: &str, why: String| format!("{flag} {arg:?}: {why}");
    while let Some(arg) = args.next() {
        if let Some(body) = arg.strip_prefix("--") {
            if body.is_empty() {
                return Err(refuse(arg, "a bare \"--\" is not accepted".into()));
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(option) = allowed.iter().find(|o| o.long == name) else {
                return Err(refuse(arg, unknown_long(name, tool)));
            };
            match (option.takes_value, inline) {
                (false, Some(_)) => {
                    return Err(refuse(arg, format!("--{name} takes no value")));
                }
                (false, None) => out.push(format!("--{name}")),
                (true, Some(v)) => out.push(format!("--{name}={v}")),
                (true, None) => {
                    let value = args
                        .next()
                        .ok_or_else(|| refuse(arg, format!("--{name} needs a value")))?;
                    out.push(format!("--{name}={value}"));
                }
            }
        } else if let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) {
            // A bundle of short options; one that takes a value takes the
            // rest of the word, or the next argument.
            for (at, c) in body.char_indices() {
                let Some(option) = allowed.iter().find(|o| o.short == Some(c)) else {
                    return Err(refuse(arg, unknown_short(c, tool)));
                };
                if !option.takes_value {
                    out.push(format!("--{}", option.long));
                    continue;
                }
                let rest = &body[at + c.len_utf8()..];
                let value = if rest.is_empty() {
                    args.next()
                        .ok_or_else(|| refuse(arg, format!("-{c} needs a value")))?
                        .clone()
                } else {
                    rest.to_string()
                };
                out.push(format!("--{}={value}", option.long));
                break;
            }
        } else {
            return Err(refuse(
                arg,
                format!(
                    "only options are accepted; a word on its own would be read by {} as a database or file name (write --schema=NAME)",
                    tool.name()
                ),
            ));
        }
    }
    Ok(out)
}

fn unknown_long(name: &str, tool: Tool) -> String {
    if OWNED.contains(&name) {
        return format!(
            "vertice-agent sets --{name} itself (or it would break the stream); remove it"
        );
    }
    let known = tool
        .allowed()
        .iter()
        .map(|o| o.long)
        .chain(OWNED.iter().copied());
    let expansions: Vec<&str> = known.filter(|l| l.starts_with(name)).collect();
    if !expansions.is_empty() && !name.is_empty() {
        return format!(
            "abbreviated options are not accepted (--{name} could mean --{}); write the option in full",
            expansions.join(", --")
        );
    }
    format!(
        "--{name} is not an option vertice-agent passes to {}; accepted: {}",
        tool.name(),
        accepted(tool)
    )
}

fn unknown_short(c: char, tool: Tool) -> String {
    format!(
        "-{c} is not an option vertice-agent passes to {} (format, output, jobs and connection options are the agent's own); accepted: {}",
        tool.name(),
        accepted(tool)
    )
}

fn accepted(tool: Tool) -> String {
    tool.allowed()
        .iter()
        .map(|o| match o.short {
            Some(c) => format!("--{} (-{c})", o.long),
            None => format!("--{}", o.long),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn dump(list: &[&str]) -> Result<Vec<String>, String> {
        normalize(&args(list), "--pg-dump-arg", Tool::PgDump)
    }

    #[test]
    fn safe_options_pass_in_every_spelling_and_come_out_long() {
        assert_eq!(
            dump(&[
                "--schema=sales",
                "--exclude-table",
                "audit.*",
                "-nx",
                "-t",
                "t1",
                "-vO"
            ])
            .expect("safe"),
            args(&[
                "--schema=sales",
                "--exclude-table=audit.*",
                "--schema=x",
                "--table=t1",
                "--verbose",
                "--no-owner"
            ])
        );
        // A value that looks like an option is still a value, as for getopt.
        assert_eq!(
            dump(&["-n", "-Fp"]).expect("value"),
            args(&["--schema=-Fp"])
        );
    }

    #[test]
    fn takeovers_are_refused_however_they_are_spelled() {
        for bad in [
            &["--fil=/x"][..],
            &["--forma=plain"],
            &["-vFp"],
            &["-Fp"],
            &["--format=plain"],
            &["--file", "/x"],
            &["-f/x"],
            &["-Z9"],
            &["-j4"],
            &["--dbname=other"],
            &["-d", "other"],
            &["otherdb"],
            &["--"],
            &["--host=evil"],
            &["-h", "evil"],
            &["--no-owner=yes"],
            &["-n"],
            &["--password"],
            &["--comp=9"],
        ] {
            let err = dump(bad).expect_err(&bad.join(" "));
            assert!(err.starts_with("--pg-dump-arg"), "{err}");
        }
        assert!(dump(&["--fil=/x"]).expect_err("abbrev").contains("--file"));
        assert!(dump(&["--format=plain"])
            .expect_err("owned")
            .contains("itself"));
    }

    #[test]
    fn restore_options_have_their_own_list() {
        let restore = |list: &[&str]| normalize(&args(list), "--pg-restore-arg", Tool::PgRestore);
        assert_eq!(
            restore(&[
                "--clean",
                "--if-exists",
                "-L",
                "/l.txt",
                "--section=pre-data"
            ])
            .expect("safe"),
            args(&[
                "--clean",
                "--if-exists",
                "--use-list=/l.txt",
                "--section=pre-data"
            ])
        );
        for bad in [
            &["-1"][..],
            &["--single-transaction"],
            &["-j2"],
            &["-f", "-"],
            &["--list"],
            &["-C"],
        ] {
            assert!(restore(bad).is_err(), "{bad:?}");
        }
    }
}
