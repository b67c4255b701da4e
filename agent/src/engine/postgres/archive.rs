//! Reads the header of a `pg_dump` custom-format archive, to record the server
//! and `pg_dump` versions in the manifest and to check the stream really is
//! such an archive; and its table of contents, which a restore drill checks
//! the restored database against.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveHeader {
    pub archive_version: (u8, u8, u8),
    pub database: Option<String>,
    pub server_version: Option<String>,
    pub pg_dump_version: Option<String>,
}

pub fn parse_header(head: &[u8]) -> Result<ArchiveHeader, String> {
    let mut r = Cursor { data: head, pos: 0 };
    read_header(&mut r).map(|(h, _, _)| h)
}

/// Like [`parse_header`]; `Ok(None)` when `head` ends inside the header.
pub fn parse_header_prefix(head: &[u8]) -> Result<Option<ArchiveHeader>, String> {
    match parse_header(head) {
        Ok(h) => Ok(Some(h)),
        Err(e) if e == TRUNCATED => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a restore should create, from the archive's table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contents {
    /// `(schema, name)` of every table (`TABLE`, partitions included).
    pub tables: Vec<(String, String)>,
    pub sequences: Vec<(String, String)>,
    /// OIDs of large objects (`BLOB`, or `BLOB METADATA` from pg_dump 17 on).
    pub large_objects: Vec<u32>,
    /// Roles the archive names: owners, grantees and grantors of its ACL
    /// entries, roles of its policies and user mappings. Roles named only in
    /// data (`aclitem`, `regrole` columns) are not here.
    pub roles: BTreeSet<String>,
}

/// The newest archive format whose table of contents this agent reads.
const NEWEST_FORMAT: (u8, u8) = (1, 16);
/// How an error about a format newer than [`NEWEST_FORMAT`] starts: a
/// matter of versions, not of a corrupt backup.
pub const NEWER_FORMAT: &str = "the archive's format is newer than this agent knows";

/// `Ok(None)` when `head` ends before the table of contents does: read more.
pub fn parse_contents(head: &[u8]) -> Result<Option<Contents>, String> {
    let mut r = Cursor { data: head, pos: 0 };
    match read_contents(&mut r) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e == TRUNCATED => Ok(None),
        Err(e) => Err(e),
    }
}

/// One entry of the table of contents, as far as the agent reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    pub dump_id: i64,
    pub tag: String,
    pub desc: String,
    /// pg_dump's section: 1 none, 2 pre-data, 3 data, 4 post-data.
    pub section: i64,
    pub defn: String,
    pub namespace: String,
    pub tablespace: String,
    pub owner: String,
    /// Dump ids this entry depends on.
    pub dependencies: Vec<i64>,
}

/// pg_dump's `SECTION_POST_DATA`.
pub const POST_DATA: i64 = 4;

/// The table of contents' entries; `Ok(None)` when `head` ends before it
/// does: read more.
pub fn parse_entries(head: &[u8]) -> Result<Option<Vec<TocEntry>>, String> {
    let mut r = Cursor { data: head, pos: 0 };
    match read_entries(&mut r) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e == TRUNCATED => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_contents(r: &mut Cursor<'_>) -> Result<Contents, String> {
    let mut contents = Contents::default();
    for entry in read_entries(r)? {
        match entry.desc.as_str() {
            "TABLE" => contents.tables.push((entry.namespace, entry.tag)),
            "SEQUENCE" => contents.sequences.push((entry.namespace, entry.tag)),
            "BLOB" | "BLOB METADATA" => contents
                .large_objects
                .extend(large_object_oids(&entry.defn)),
            "ACL" | "DEFAULT ACL" | "POLICY" | "USER MAPPING" => {
                contents.roles.extend(named_roles(&entry.defn))
            }
            _ => {}
        }
        if !entry.owner.is_empty() {
            contents.roles.insert(entry.owner);
        }
    }
    Ok(contents)
}

fn read_entries(r: &mut Cursor<'_>) -> Result<Vec<TocEntry>, String> {
    let (_, version, (int_size, off_size)) = read_header(r)?;
    let (major, minor) = (version.0, version.1);
    if (major, minor) < (1, 12) {
        return Err(format!(
            "archive version {major}.{minor} is older than any pg_dump this agent reads (1.12, PostgreSQL 9.5)"
        ));
    }
    // A newer format may add fields to every entry: read as 1.16, its
    // table of contents would be garbage, reported as corruption.
    if (major, minor) > NEWEST_FORMAT {
        return Err(format!(
            "{NEWER_FORMAT} ({major}.{minor}; this agent reads up to {}.{}, pg_dump 17): upgrade vertice-agent, or drill with checks.objects false",
            NEWEST_FORMAT.0, NEWEST_FORMAT.1
        ));
    }
    let count = r.int(int_size)?;
    if !(0..=50_000_000).contains(&count) {
        return Err(format!("the table of contents claims {count} entries"));
    }
    let mut entries = Vec::new();
    for _ in 0..count {
        let dump_id = r.int(int_size)?;
        r.int(int_size)?; // had dumper
        r.string(int_size)?; // table oid
        r.string(int_size)?; // oid
        let tag = r.string(int_size)?.unwrap_or_default();
        let desc = r.string(int_size)?.unwrap_or_default();
        let section = r.int(int_size)?;
        let defn = r.string(int_size)?.unwrap_or_default();
        r.string(int_size)?; // drop statement
        r.string(int_size)?; // copy statement
        let namespace = r.string(int_size)?.unwrap_or_default();
        let tablespace = r.string(int_size)?.unwrap_or_default();
        if (major, minor) >= (1, 14) {
            r.string(int_size)?; // table access method
        }
        if (major, minor) >= (1, 16) {
            r.int(int_size)?; // relkind
        }
        let owner = r.string(int_size)?.unwrap_or_default();
        r.string(int_size)?; // "false": tables WITH OIDS
        let mut dependencies = Vec::new();
        while let Some(dep) = r.string(int_size)? {
            if let Ok(id) = dep.parse() {
                dependencies.push(id);
            }
        }
        r.byte()?; // data offset: a flag byte, then the offset
        r.bytes(off_size)?;
        entries.push(TocEntry {
            dump_id,
            tag,
            desc,
            section,
            defn,
            namespace,
            tablespace,
            owner,
            dependencies,
        });
    }
    Ok(entries)
}

/// A word of SQL as far as finding role names needs: identifiers (quoted
/// ones exact, bare ones as written: pg_dump quotes every name that needs
/// it), and the punctuation that ends a list.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn tokens(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // The text up to the next `end`, with a doubled `end` standing for one.
    let quoted = |i: &mut usize, end: char| {
        let mut text = String::new();
        *i += 1;
        while *i < chars.len() {
            if chars[*i] == end {
                if chars.get(*i + 1) == Some(&end) {
                    text.push(end);
                    *i += 2;
                    continue;
                }
                *i += 1;
                break;
            }
            text.push(chars[*i]);
            *i += 1;
        }
        text
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' {
            out.push(Token::Quoted(quoted(&mut i, '"')));
        } else if c == '\'' {
            quoted(&mut i, '\'');
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// Role names in the SQL of an ACL, default-ACL, policy or user-mapping
/// entry: after `TO` and `REVOKE … FROM` (lists), `FOR ROLE` (a list),
/// `SESSION AUTHORIZATION` and `USER MAPPING FOR` (one name), outside
/// parentheses; `PUBLIC` and `CURRENT_USER`-like words are not roles.
fn named_roles(sql: &str) -> Vec<String> {
    let tokens = tokens(sql);
    let word =
        |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word(x)) if x.eq_ignore_ascii_case(w));
    let mut roles = Vec::new();
    let mut depth = 0i32;
    let mut statement_start = 0;
    let mut i = 0;
    while i < tokens.len() {
        let list = match &tokens[i] {
            Token::Punct('(') => {
                depth += 1;
                None
            }
            Token::Punct(')') => {
                depth -= 1;
                None
            }
            Token::Punct(';') => {
                statement_start = i + 1;
                None
            }
            _ if depth != 0 => None,
            t if word(Some(t), "TO") => Some(true),
            t if word(Some(t), "FROM") && word(tokens.get(statement_start), "REVOKE") => Some(true),
            t if word(Some(t), "ROLE")
                && word(i.checked_sub(1).and_then(|p| tokens.get(p)), "FOR") =>
            {
                Some(true)
            }
            t if word(Some(t), "AUTHORIZATION") => Some(false),
            t if word(Some(t), "FOR")
                && word(i.checked_sub(1).and_then(|p| tokens.get(p)), "MAPPING") =>
            {
                Some(false)
            }
            _ => None,
        };
        i += 1;
        let Some(many) = list else { continue };
        loop {
            if word(tokens.get(i), "GROUP") {
                i += 1;
            }
            match tokens.get(i) {
                Some(Token::Quoted(name)) => roles.push(name.clone()),
                Some(Token::Word(name)) => {
                    let special = [
                        "PUBLIC",
                        "CURRENT_USER",
                        "SESSION_USER",
                        "CURRENT_ROLE",
                        "USER",
                    ];
                    if !special.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                        roles.push(name.clone());
                    }
                }
                _ => break,
            }
            i += 1;
            if !many || tokens.get(i) != Some(&Token::Punct(',')) {
                break;
            }
            i += 1;
        }
    }
    roles
}

/// The OIDs of a large-object entry. Before pg_dump 17 a `BLOB` entry's
/// definition is `SELECT pg_catalog.lo_create('16385');`; from 17 on a
/// `BLOB METADATA` entry groups many and lists their OIDs one per line
/// (pg_restore writes the `lo_create` calls itself).
fn large_object_oids(defn: &str) -> Vec<u32> {
    if defn.contains("lo_create('") {
        return defn
            .split("lo_create('")
            .skip(1)
            .filter_map(|rest| rest.split('\'').next()?.parse().ok())
            .collect();
    }
    defn.split_whitespace()
        .filter_map(|oid| oid.parse().ok())
        .collect()
}

type Sizes = (usize, usize);
type Version = (u8, u8, u8);

fn read_header(r: &mut Cursor<'_>) -> Result<(ArchiveHeader, Version, Sizes), String> {
    if r.bytes(5)? != b"PGDMP" {
        return Err("the stream does not start with a pg_dump custom-format header (PGDMP)".into());
    }
    let version = (r.byte()?, r.byte()?, r.byte()?);
    let int_size = r.byte()? as usize;
    let off_size = r.byte()? as usize;
    let format = r.byte()?;
    if !(1..=8).contains(&int_size) {
        return Err(format!(
            "archive header has an implausible integer size {int_size}"
        ));
    }
    if !(1..=16).contains(&off_size) {
        return Err(format!(
            "archive header has an implausible offset size {off_size}"
        ));
    }
    // 1 is the custom format; a directory or tar archive never reaches us.
    if format != 1 {
        return Err(format!(
            "the archive is not in pg_dump's custom format (format byte {format})"
        ));
    }
    // Archive 1.15 (PostgreSQL 16) stores the compression algorithm as one
    // byte; older archives store the level as an integer.
    if (version.0, version.1) >= (1, 15) {
        r.byte()?;
    } else {
        r.int(int_size)?;
    }
    for _ in 0..7 {
        r.int(int_size)?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    let database = r.string(int_size)?;
    let server_version = r.string(int_size)?;
    let pg_dump_version = r.string(int_size)?;
    let header = ArchiveHeader {
        archive_version: version,
        database,
        server_version,
        pg_dump_version,
    };
    Ok((header, version, (int_size, off_size)))
}

const TRUNCATED: &str = "archive header is truncated";

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or(TRUNCATED)?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    /// pg_dump's WriteInt: a sign byte, then `size` bytes little-endian.
    fn int(&mut self, size: usize) -> Result<i64, String> {
        let negative = self.byte()? != 0;
        let mut value: i64 = 0;
        for (i, b) in self.bytes(size)?.iter().enumerate() {
            value |= i64::from(*b) << (8 * i);
        }
        Ok(if negative { -value } else { value })
    }

    fn string(&mut self, int_size: usize) -> Result<Option<String>, String> {
        let len = self.int(int_size)?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| "archive string length overflows")?;
        let bytes = self.bytes(len)?;
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Vec<u8> {
        let mut out = vec![u8::from(v < 0)];
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        out
    }

    fn string(s: &str) -> Vec<u8> {
        let mut out = int(s.len() as i64);
        out.extend_from_slice(s.as_bytes());
        out
    }

    fn header(version: (u8, u8, u8)) -> Vec<u8> {
        let mut h = b"PGDMP".to_vec();
        h.extend_from_slice(&[version.0, version.1, version.2, 4, 8, 1]);
        if version.1 >= 15 {
            h.push(0);
        } else {
            h.extend(int(0));
        }
        for v in [5, 4, 3, 27, 10, 126, 0] {
            h.extend(int(v));
        }
        h.extend(string("sales"));
        h.extend(string("15.18 (Debian 15.18-0+deb12u1)"));
        h.extend(string("15.18 (Debian 15.18-0+deb12u1)"));
        h.extend_from_slice(b"rest of the archive");
        h
    }

    #[test]
    fn reads_versions_from_old_and_new_archives() {
        for v in [(1, 14, 0), (1, 16, 0)] {
            let parsed = parse_header(&header(v)).expect("header");
            assert_eq!(parsed.archive_version, v);
            assert_eq!(parsed.database.as_deref(), Some("sales"));
            assert_eq!(
                parsed.server_version.as_deref(),
                Some("15.18 (Debian 15.18-0+deb12u1)")
            );
        }
    }

    /// A version 1.16 archive (pg_dump 17) whose table of contents holds a
    /// table, a sequence, an index and one large object.
    fn archive_with_contents() -> Vec<u8> {
        let mut a = header((1, 16, 0));
        a.truncate(a.len() - b"rest of the archive".len());
        let entries = [
            ("public", "orders", "TABLE", ""),
            ("public", "orders_id_seq", "SEQUENCE", ""),
            ("public", "orders_pkey", "INDEX", ""),
            ("", "16385..16386", "BLOB METADATA", "16385\n16386\n"),
        ];
        a.extend(int(entries.len() as i64));
        for (id, (schema, tag, desc, defn)) in entries.iter().enumerate() {
            a.extend(int(id as i64 + 1));
            a.extend(int(1));
            a.extend(string("0"));
            a.extend(string("0"));
            a.extend(string(tag));
            a.extend(string(desc));
            a.extend(int(1));
            a.extend(string(defn));
            a.extend(string(""));
            a.extend(string(""));
            a.extend(string(schema));
            a.extend(string(""));
            a.extend(string("heap"));
            a.extend(int(114));
            a.extend(string("sales"));
            a.extend(string("false"));
            a.extend(int(-1)); // no dependencies
            a.push(1);
            a.extend_from_slice(&[0; 8]);
        }
        a
    }

    #[test]
    fn lists_tables_sequences_and_large_objects() {
        let archive = archive_with_contents();
        let contents = parse_contents(&archive).expect("parses").expect("complete");
        assert_eq!(contents.tables, vec![("public".into(), "orders".into())]);
        assert_eq!(
            contents.sequences,
            vec![("public".into(), "orders_id_seq".into())]
        );
        assert_eq!(contents.large_objects, vec![16385, 16386]);
        assert_eq!(
            contents.roles,
            BTreeSet::from(["sales".to_string()]),
            "owners"
        );
    }

    #[test]
    fn roles_are_found_in_grants_policies_and_mappings() {
        let grants = "GRANT SELECT ON TABLE public.t TO app_role;\nGRANT ALL ON TABLE public.t TO \"Odd \"\"Role\", reader WITH GRANT OPTION;\nREVOKE ALL ON TABLE public.t FROM PUBLIC;\nREVOKE SELECT(secret) ON TABLE public.t FROM gone;\nSET SESSION AUTHORIZATION grantor;\nGRANT SELECT ON TABLE public.t TO GROUP old_group;\nRESET SESSION AUTHORIZATION;\n";
        assert_eq!(
            named_roles(grants),
            [
                "app_role",
                "Odd \"Role",
                "reader",
                "gone",
                "grantor",
                "old_group"
            ]
        );
        assert_eq!(
            named_roles("ALTER DEFAULT PRIVILEGES FOR ROLE owner1 IN SCHEMA s GRANT SELECT ON TABLES TO app_role;\n"),
            ["owner1", "app_role"]
        );
        // A policy's expressions are not role lists, even with TO or FROM in them.
        assert_eq!(
            named_roles("CREATE POLICY p ON public.t AS RESTRICTIVE FOR SELECT TO app_role, auditor USING ((owner IN ( SELECT u.name FROM public.users u WHERE (u.note = 'TO x'::text))));\n"),
            ["app_role", "auditor"]
        );
        assert_eq!(
            named_roles(
                "CREATE USER MAPPING FOR remote_user SERVER s OPTIONS (\n    \"user\" 'x'\n);\n"
            ),
            ["remote_user"]
        );
        assert!(named_roles("CREATE USER MAPPING FOR public SERVER s;\n").is_empty());
    }

    #[test]
    fn a_table_of_contents_cut_short_asks_for_more() {
        let archive = archive_with_contents();
        assert_eq!(parse_contents(&archive[..archive.len() - 3]), Ok(None));
        assert_eq!(
            large_object_oids("SELECT pg_catalog.lo_create('1');\n"),
            vec![1],
            "pg_dump 16 and older"
        );
    }

    #[test]
    fn a_newer_format_is_named_not_misread() {
        let mut archive = archive_with_contents();
        archive[6] = 17;
        let err = parse_contents(&archive).expect_err("newer");
        assert!(
            err.starts_with(NEWER_FORMAT) && err.contains("1.17"),
            "{err}"
        );
    }

    #[test]
    fn rejects_other_streams() {
        assert!(parse_header(b"REDIS0011").is_err());
        assert!(parse_header(&header((1, 14, 0))[..20]).is_err());
    }
}
