//! What psql's and pg_restore's text says, read: the line an SQL error is
//! at, the object that line belongs to (pg_restore's `-- Name:` comments),
//! psql's own error lines with secrets redacted, a missing role's name.
//! Pure; the restore (`restore/`: `start.rs`, `forward.rs`, `rollback.rs`)
//! words its failures with it.

use std::collections::VecDeque;

/// The line of psql's input an SQL error is reported at
/// (`psql:<stdin>:57: ERROR:  …`); `None` for connection errors.
pub(super) fn sql_error_line(message: &str) -> Option<u64> {
    const AT: &str = "psql:<stdin>:";
    message.match_indices(AT).find_map(|(i, _)| {
        let rest = &message[i + AT.len()..];
        let (line, rest) = rest.split_once(':')?;
        rest.trim_start()
            .starts_with("ERROR:")
            .then(|| line.parse().ok())
            .flatten()
    })
}

/// psql's failure (`psql failed (exit code 3): <stderr lines joined by
/// " | ">`) with only the lines psql itself wrote (`psql:<stdin>:57:
/// ERROR:  …`, `psql: error: …`): the rest (`LINE 1: …`, the caret,
/// `DETAIL`, `CONTEXT`, `QUERY`) can echo SQL and the data in it, and the
/// error names the object already. Without such a line, the whole.
pub(super) fn error_lines(reason: &str) -> String {
    let Some(at) = reason.find("psql:") else {
        return reason.to_string();
    };
    let (head, rest) = reason.split_at(at);
    let kept: Vec<&str> = rest
        .split(" | ")
        .filter(|part| part.starts_with("psql:"))
        .collect();
    format!("{head}{}", kept.join(" | "))
}

/// `password=…` (a connection string) and `password '…'` (an option or a
/// role's password) with the value replaced: a belt under [`error_lines`],
/// for an error message that quotes one itself.
pub(super) fn redact_passwords(text: &str) -> String {
    const WORD: &str = "password";
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(WORD) {
        let start = from + found;
        let mut at = start + WORD.len();
        from = at;
        // Part of a longer name (`password_hash`, `passwords`): not one.
        if bytes
            .get(at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            continue;
        }
        // A quoted option name: `"password" '…'`.
        if bytes.get(at) == Some(&b'"') {
            at += 1;
        }
        let skip_spaces = |mut i: usize| {
            while bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            i
        };
        at = skip_spaces(at);
        let value_start = match bytes.get(at) {
            Some(b'=') => skip_spaces(at + 1),
            Some(b'\'') => at,
            _ => continue,
        };
        let (secret, end) = match bytes.get(value_start) {
            // Quoted: up to the closing quote (as many quotes as opened
            // it, for a conninfo value quoted inside an SQL literal).
            Some(b'\'') => {
                let quotes = bytes[value_start..]
                    .iter()
                    .take_while(|b| **b == b'\'')
                    .count();
                let inner = value_start + quotes;
                match text[inner..].find(&"'".repeat(quotes)) {
                    Some(i) => (inner..inner + i, inner + i + quotes),
                    None => (inner..text.len(), text.len()),
                }
            }
            _ => {
                let end = bytes[value_start..]
                    .iter()
                    .position(|b| {
                        b.is_ascii_whitespace() || matches!(b, b'\'' | b'"' | b')' | b',')
                    })
                    .map_or(text.len(), |i| value_start + i);
                (value_start..end, end)
            }
        };
        if secret.is_empty() {
            continue;
        }
        out.push_str(&text[copied..secret.start]);
        out.push_str("***");
        copied = secret.end;
        from = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// The role of `ERROR:  role "app_role" does not exist`.
pub(super) fn missing_role(message: &str) -> Option<&str> {
    let start = message.find("ERROR:  role \"")? + "ERROR:  role \"".len();
    let len = message[start..].find("\" does not exist")?;
    Some(&message[start..start + len])
}

/// `"name"` with inner quotes doubled, for a statement a message suggests.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where each object's SQL starts in what psql was sent, so that psql's
/// `psql:<stdin>:LINE: ERROR` names the object: pg_restore writes a
/// `-- Name: orders; Type: TABLE; Schema: public; Owner: app` comment before
/// each. Only recent ones are kept: psql reads at most a pipe's worth
/// behind what was sent.
pub(super) struct ObjectLines {
    /// Lines sent so far.
    lines: u64,
    /// The start of the line being sent.
    current: Vec<u8>,
    recent: VecDeque<(u64, String)>,
}

const KEPT_OBJECTS: usize = 4096;
const KEPT_LINE: usize = 512;

impl ObjectLines {
    /// Counting starts after what was sent before pg_restore's SQL.
    pub(super) fn after(sent: &str) -> Self {
        ObjectLines {
            lines: sent.matches('\n').count() as u64,
            current: Vec::new(),
            recent: VecDeque::new(),
        }
    }

    pub(super) fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.keep(&bytes[..end]);
            self.lines += 1;
            if let Some(object) = object_of(&self.current) {
                self.remember(self.lines, object);
            }
            self.current.clear();
            bytes = &bytes[end + 1..];
        }
        self.keep(bytes);
    }

    /// Names the next line sent (the agent's own statements).
    pub(super) fn mark(&mut self, what: &str) {
        self.remember(self.lines + 1, what.to_string());
    }

    pub(super) fn keep(&mut self, part: &[u8]) {
        let room = KEPT_LINE.saturating_sub(self.current.len());
        self.current
            .extend_from_slice(&part[..part.len().min(room)]);
    }

    pub(super) fn remember(&mut self, line: u64, object: String) {
        if self.recent.len() == KEPT_OBJECTS {
            self.recent.pop_front();
        }
        self.recent.push_back((line, object));
    }

    /// The object whose SQL holds `line`.
    pub(super) fn object_at(&self, line: u64) -> Option<String> {
        self.recent
            .iter()
            .rev()
            .find(|(start, _)| *start <= line)
            .map(|(_, object)| object.clone())
    }
}

/// `TABLE public.orders` from pg_restore's `-- Name: orders; Type: TABLE;
/// Schema: public; Owner: app` (or `-- Data for Name: …`).
pub(super) fn object_of(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let rest = text
        .strip_prefix("-- Name: ")
        .or_else(|| text.strip_prefix("-- Data for Name: "))?;
    let mut fields = rest.split("; ");
    let name = fields.next()?;
    let mut kind = None;
    let mut schema = None;
    for field in fields {
        if let Some(v) = field.strip_prefix("Type: ") {
            kind = Some(v);
        } else if let Some(v) = field.strip_prefix("Schema: ") {
            schema = Some(v);
        }
    }
    Some(match schema {
        Some(s) if s != "-" => format!("{} {s}.{name}", kind?),
        _ => format!("{} {name}", kind?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_text_are_redacted() {
        for (text, redacted) in [
            (
                "host=db password=hunter2 dbname=x",
                "host=db password=*** dbname=x",
            ),
            (
                "OPTIONS (user 'a', password 'hun ter')",
                "OPTIONS (user 'a', password '***')",
            ),
            (
                "ROLE r ENCRYPTED PASSWORD 'x'",
                "ROLE r ENCRYPTED PASSWORD '***'",
            ),
            ("OPTIONS (\"password\" 'x')", "OPTIONS (\"password\" '***')"),
            (
                "CONNECTION 'password=''a b'' host=h'",
                "CONNECTION 'password=''***'' host=h'",
            ),
            (
                "password = 'x', password=y",
                "password = '***', password=***",
            ),
            ("password 'unterminated", "password '***"),
        ] {
            assert_eq!(redact_passwords(text), redacted, "{text}");
        }
        for kept in [
            "password authentication failed for user \"bob\"",
            "column password_hash = 'abc'",
            "password=",
            "no passwords here",
        ] {
            assert_eq!(redact_passwords(kept), kept);
        }
        assert_eq!(
            error_lines("psql failed (exit code 3): psql:<stdin>:5: ERROR:  x | LINE 1: y | ^ | psql:<stdin>:6: error: z"),
            "psql failed (exit code 3): psql:<stdin>:5: ERROR:  x | psql:<stdin>:6: error: z"
        );
        assert_eq!(
            error_lines("psql failed (exit code 2)"),
            "psql failed (exit code 2)"
        );
    }
}
