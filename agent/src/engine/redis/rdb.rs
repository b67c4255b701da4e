//! A streaming reader of RDB files: each key comes first with its expiry and
//! eviction hints, then its value, in the serialized form `RESTORE` takes.
//!
//! Values are not decoded, only delimited: the bytes of a value are copied
//! verbatim into a DUMP payload, so every encoding Redis writes (listpacks,
//! quicklists, intsets, streams, module values) restores exactly. A value
//! need not be held whole: a string's size is in its header, so its body can
//! be read in chunks ([`RdbReader::string_head`], [`RdbReader::body`]), and
//! an aggregate can be read element by element ([`RdbReader::count`],
//! [`RdbReader::element`], [`element_args`]). An element holding a string
//! above a bound is not read whole either: its header says how large the
//! string is, and its body is read verbatim ([`RdbReader::body`]) or decoded
//! as it streams ([`RdbReader::decoded`]).

use std::io::{self, Read};

use super::lzf;
use super::packed;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdbEvent {
    SelectDb(u64),
    /// A key: its value follows and must be read (or skipped) before the
    /// next event.
    Key(KeyHead),
    /// A function library (Redis 7): its source, for `FUNCTION LOAD`.
    Function(Vec<u8>),
    /// Module auxiliary data, which has no command to restore it.
    SkippedModuleAux,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHead {
    pub key: Vec<u8>,
    /// The RDB type byte of the value.
    pub value_type: u8,
    pub expire_at_ms: Option<i64>,
    pub idle_seconds: Option<u64>,
    pub lfu_freq: Option<u8>,
}

impl KeyHead {
    pub fn type_name(&self) -> &'static str {
        type_name(self.value_type)
    }
}

pub fn type_name(t: u8) -> &'static str {
    match t {
        0 => "string",
        1 | 10 | 14 | 18 => "list",
        2 | 11 | 20 => "set",
        3 | 5 | 12 | 17 => "zset",
        4 | 9 | 13 | 16 | 22..=25 => "hash",
        6 | 7 => "module",
        15 | 19 | 21 => "stream",
        _ => "unknown",
    }
}

/// How a value is laid out, as far as reading it in pieces needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `fixed` bytes, then one string (a plain string, or a listpack, ziplist
    /// or intset): the value's size is known once the string's header is read.
    OneString { fixed: u64 },
    /// A count, then that many elements: list items or quicklist nodes, set
    /// members, hash fields with values, zset members with scores.
    Counted,
    /// Streams, hashes with field expiries, module values: read whole.
    Whole,
}

pub fn shape(t: u8) -> Shape {
    match t {
        0 | 9..=13 | 16 | 17 | 20 | 23 => Shape::OneString { fixed: 0 },
        25 => Shape::OneString { fixed: 8 }, // the earliest field expiry
        1..=5 | 14 | 18 => Shape::Counted,
        _ => Shape::Whole,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    #[error("reading the RDB: {0}")]
    Io(#[from] io::Error),
    #[error("malformed RDB: {0}")]
    Format(String),
    #[error("the RDB holds {0}, which this agent cannot restore into a running instance; restore it as a file (--to file:///data/dump.rdb) instead")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, RdbError>;

fn bad(msg: impl Into<String>) -> RdbError {
    RdbError::Format(msg.into())
}

/// Names the key in a format error, so a damaged value can be found.
fn in_key(key: &[u8], e: RdbError) -> RdbError {
    match e {
        RdbError::Format(m) => bad(format!("key {}: {m}", String::from_utf8_lossy(key))),
        other => other,
    }
}

pub struct RdbReader<R> {
    input: Source<R>,
    version: u16,
    finished: bool,
    /// A key was returned whose value has not been read yet.
    value_pending: bool,
}

impl<R: Read> RdbReader<R> {
    pub fn new(input: R) -> Result<Self> {
        let mut reader = RdbReader {
            input: Source::new(input),
            version: 0,
            finished: false,
            value_pending: false,
        };
        let mut magic = [0u8; 9];
        reader.input.read_exact(&mut magic)?;
        if &magic[..5] != b"REDIS" {
            return Err(bad("missing REDIS header"));
        }
        let version: u16 = std::str::from_utf8(&magic[5..])
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("unreadable RDB version"))?;
        if !(1..=12).contains(&version) {
            return Err(RdbError::Unsupported(format!(
                "RDB format version {version}"
            )));
        }
        reader.version = version;
        Ok(reader)
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// The next event, or `None` after the EOF opcode. After a
    /// [`RdbEvent::Key`] its value must be read or skipped first.
    pub fn next_event(&mut self) -> Result<Option<RdbEvent>> {
        if self.value_pending {
            return Err(bad("the value of the previous key was not read"));
        }
        let mut expire_at_ms = None;
        let mut idle_seconds = None;
        let mut lfu_freq = None;
        loop {
            if self.finished {
                return Ok(None);
            }
            let opcode = self.input.u8()?;
            match opcode {
                0xFF => {
                    self.finished = true;
                    return Ok(None);
                }
                0xFE => return Ok(Some(RdbEvent::SelectDb(self.input.plain_len()?))),
                0xFD => {
                    expire_at_ms = Some(i64::from(u32::from_le_bytes(self.input.array()?)) * 1000)
                }
                0xFC => expire_at_ms = Some(i64::from_le_bytes(self.input.array()?)),
                0xFB => {
                    self.input.plain_len()?;
                    self.input.plain_len()?;
                }
                0xFA => {
                    self.input.skip_string()?;
                    self.input.skip_string()?;
                }
                0xF9 => lfu_freq = Some(self.input.u8()?),
                0xF8 => idle_seconds = Some(self.input.plain_len()?),
                0xF7 => {
                    self.input.plain_len()?; // module id
                    self.input.plain_len()?; // when opcode
                    self.input.plain_len()?; // when
                    self.input.skip_module_opcodes()?;
                    return Ok(Some(RdbEvent::SkippedModuleAux));
                }
                0xF6 => {
                    return Err(RdbError::Unsupported(
                        "functions saved by a Redis 7.0 release candidate".into(),
                    ))
                }
                0xF5 => return Ok(Some(RdbEvent::Function(self.input.string()?))),
                0xF4 => {
                    // Slot info (cluster): slot, keys, expiring keys.
                    self.input.plain_len()?;
                    self.input.plain_len()?;
                    self.input.plain_len()?;
                }
                value_type => {
                    let key = self.input.string()?;
                    self.value_pending = true;
                    return Ok(Some(RdbEvent::Key(KeyHead {
                        key,
                        value_type,
                        expire_at_ms,
                        idle_seconds,
                        lfu_freq,
                    })));
                }
            }
        }
    }

    /// The whole value of `head`: type byte and value, exactly as in the RDB
    /// (a DUMP payload without version and CRC).
    pub fn value(&mut self, head: &KeyHead) -> Result<Vec<u8>> {
        self.value_pending = false;
        let t = head.value_type;
        self.input
            .capture(&[t], |s| s.skip_value(t))
            .map_err(|e| in_key(&head.key, e))
    }

    pub fn skip_value(&mut self, head: &KeyHead) -> Result<()> {
        self.value_pending = false;
        self.input
            .skip_value(head.value_type)
            .map_err(|e| in_key(&head.key, e))
    }

    /// For a [`Shape::OneString`] value: its bytes up to the string's body
    /// (the fixed bytes and the string's header, verbatim) and the length of
    /// the body, which the caller then reads with [`Self::body`].
    pub fn string_head(&mut self, fixed: u64) -> Result<(Vec<u8>, u64)> {
        self.value_pending = false;
        let mut body = 0;
        let head = self.input.capture(&[], |s| {
            s.skip(fixed)?;
            body = s.string_head()?;
            Ok(())
        })?;
        Ok((head, body))
    }

    /// Fills `buf` with the next bytes of a string body.
    pub fn body(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).map_err(eof_is_truncation)
    }

    /// For a [`Shape::Counted`] value: its count as written (verbatim) and
    /// as a number; the elements follow ([`Self::element`]).
    pub fn count(&mut self) -> Result<(Vec<u8>, u64)> {
        self.value_pending = false;
        let mut count = 0;
        let head = self.input.capture(&[], |s| {
            count = s.plain_len()?;
            Ok(())
        })?;
        Ok((head, count))
    }

    /// The next element of a counted value of type `t`: verbatim, or, if
    /// one of its strings is larger than `bound`, up to that string's body.
    pub fn element(&mut self, t: u8, bound: u64) -> Result<Element> {
        let mut large = None;
        let raw = self.input.capture(&[], |s| {
            let strings = match t {
                4 => 2, // a field and its value
                1 | 2 | 3 | 5 | 14 | 18 => 1,
                other => return Err(bad(format!("value type {other} has no elements"))),
            };
            if t == 18 {
                s.plain_len()?; // container kind
            }
            for index in 0..strings {
                let (stored, body) = s.string_body()?;
                if let Some(body) = body.filter(|b| b.stored().max(b.decoded_len()) > bound) {
                    large = Some((index, body));
                    return Ok(());
                }
                s.skip(stored)?;
            }
            match t {
                3 => s.text_double().map(drop),
                5 => s.skip(8),
                _ => Ok(()),
            }
        })?;
        let Some((index, body)) = large else {
            return Ok(Element::Whole(raw));
        };
        let kind = match (t, index) {
            (4, 0) => LargeKind::Field,
            (4, _) => LargeKind::Value {
                field: Source::new(&raw[..]).string()?,
            },
            (3 | 5, _) => LargeKind::Member,
            (14, _) => LargeKind::Packed { listpack: false },
            (18, _) => match Source::new(&raw[..]).plain_len()? {
                1 => LargeKind::Item, // a plain node: the item itself
                2 => LargeKind::Packed { listpack: true },
                other => return Err(bad(format!("unknown quicklist container {other}"))),
            },
            _ => LargeKind::Item,
        };
        Ok(Element::Large(Large { raw, kind, body }))
    }

    /// The body of a large string, decoded as it is read: exactly
    /// `body.len()` bytes.
    pub fn decoded(&mut self, body: Body) -> Decoded<'_, R> {
        match body {
            Body::Plain(n) => Decoded(DecodedFrom::Plain((&mut self.input).take(n))),
            Body::Lzf { stored, len } => Decoded(DecodedFrom::Lzf(lzf::Decoder::new(
                (&mut self.input).take(stored),
                len,
            ))),
        }
    }

    /// The next string, whole unless larger than `bound`.
    pub fn string_bounded(&mut self, bound: u64) -> Result<Str> {
        self.input.string_bounded(bound)
    }

    /// The score that ends an element of a zset of type `t`, as ZADD takes it.
    pub fn score(&mut self, t: u8) -> Result<Vec<u8>> {
        match t {
            3 => self.input.text_double(),
            _ => Ok(score_text(f64::from_le_bytes(self.input.array()?))),
        }
    }
}

/// An element of a counted value, as [`RdbReader::element`] read it.
#[derive(Debug, PartialEq, Eq)]
pub enum Element {
    Whole(Vec<u8>),
    Large(Large),
}

/// An element with a string larger than the bound: read verbatim up to that
/// string's body, which comes next in the RDB.
#[derive(Debug, PartialEq, Eq)]
pub struct Large {
    pub raw: Vec<u8>,
    pub kind: LargeKind,
    pub body: Body,
}

/// Which string of its element is large, and what follows its body.
#[derive(Debug, PartialEq, Eq)]
pub enum LargeKind {
    /// A list item or a set member: the element's only string.
    Item,
    /// A hash field; its value follows (small or large).
    Field,
    /// A hash value, the element's last string.
    Value { field: Vec<u8> },
    /// A zset member; its score follows ([`RdbReader::score`]).
    Member,
    /// A listpack or ziplist (a quicklist node) holding a list's items.
    Packed { listpack: bool },
}

impl Large {
    /// Bytes of the element after the large string's body, when they are
    /// known before it is read: the element can then go into a RESTORE
    /// payload verbatim, whose length must be announced first.
    pub fn known_tail(&self, t: u8) -> Option<u64> {
        match (&self.kind, t) {
            (LargeKind::Item | LargeKind::Value { .. } | LargeKind::Packed { .. }, _) => Some(0),
            (LargeKind::Member, 5) => Some(8), // a binary double
            // A field's value, an old zset's score written as text.
            _ => None,
        }
    }
}

/// The body of a string: how it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Plain(u64),
    Lzf { stored: u64, len: u64 },
}

impl Body {
    /// Bytes it takes in the RDB.
    pub fn stored(self) -> u64 {
        match self {
            Body::Plain(n) | Body::Lzf { stored: n, .. } => n,
        }
    }

    /// Bytes it decodes to.
    pub fn decoded_len(self) -> u64 {
        match self {
            Body::Plain(n) | Body::Lzf { len: n, .. } => n,
        }
    }
}

/// A string, held or (larger than the bound) still to be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Str {
    Small(Vec<u8>),
    Large(Body),
}

/// A large string's body, decoded from the RDB as it is read.
pub struct Decoded<'a, R>(DecodedFrom<'a, R>);

enum DecodedFrom<'a, R> {
    Plain(io::Take<&'a mut Source<R>>),
    Lzf(lzf::Decoder<io::Take<&'a mut Source<R>>>),
}

impl<R: Read> Read for Decoded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            DecodedFrom::Plain(r) => r.read(buf),
            DecodedFrom::Lzf(r) => r.read(buf),
        }
    }
}

/// A failed read of a large string's body as an RDB error: damaged data (a
/// short file, bad LZF) is a format error, anything else the reader's own.
pub fn read_error(e: io::Error) -> RdbError {
    match e.kind() {
        io::ErrorKind::InvalidData => bad(e.to_string()),
        _ => eof_is_truncation(e),
    }
}

/// The arguments that add one element (as [`RdbReader::element`] returned
/// it) to a value of type `t`, in the order its command takes them: a list
/// item (every item of a quicklist node), a set member, a hash field and its
/// value, a zset score and its member.
pub fn element_args(t: u8, raw: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut s = Source::new(raw);
    let args = match t {
        1 | 2 => vec![s.string()?],
        4 => {
            let field = s.string()?;
            vec![field, s.string()?]
        }
        3 => {
            let member = s.string()?;
            vec![s.text_double()?, member]
        }
        5 => {
            let member = s.string()?;
            vec![score_text(f64::from_le_bytes(s.array()?)), member]
        }
        14 => packed::ziplist(&s.string()?).map_err(bad)?,
        18 => match s.plain_len()? {
            1 => vec![s.string()?], // a plain node: one large item
            2 => packed::listpack(&s.string()?).map_err(bad)?,
            other => return Err(bad(format!("unknown quicklist container {other}"))),
        },
        other => return Err(bad(format!("value type {other} has no elements"))),
    };
    Ok(args)
}

/// A zset score as ZADD reads it back to the same double: Rust prints the
/// shortest digits that round-trip, and `inf` / `-inf` as Redis spells them.
pub fn score_text(score: f64) -> Vec<u8> {
    format!("{score:e}").into_bytes()
}

/// A length in the RDB's own encoding (the count of a value's elements).
pub fn encode_len(n: u64) -> Vec<u8> {
    match n {
        0..=0x3f => vec![n as u8],
        0x40..=0x3fff => vec![0x40 | (n >> 8) as u8, n as u8],
        _ => match u32::try_from(n) {
            Ok(n) => [&[0x80][..], &n.to_be_bytes()].concat(),
            Err(_) => [&[0x81][..], &n.to_be_bytes()].concat(),
        },
    }
}

/// The RDB's primitive encodings over any reader, copying what is read into
/// `captured` while `capturing` is on.
struct Source<R> {
    inner: R,
    capturing: bool,
    captured: Vec<u8>,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.capturing {
            self.captured.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

enum Len {
    Plain(u64),
    /// A specially encoded string: 0 int8, 1 int16, 2 int32, 3 LZF.
    Encoded(u8),
}

impl<R: Read> Source<R> {
    fn new(inner: R) -> Self {
        Source {
            inner,
            capturing: false,
            captured: Vec::new(),
        }
    }

    /// `first`, then the bytes `read` consumed.
    fn capture(
        &mut self,
        first: &[u8],
        read: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<Vec<u8>> {
        self.captured.clear();
        self.captured.extend_from_slice(first);
        self.capturing = true;
        let outcome = read(self);
        self.capturing = false;
        let captured = std::mem::take(&mut self.captured);
        outcome.map(|()| captured)
    }

    fn skip_value(&mut self, t: u8) -> Result<()> {
        match (shape(t), t) {
            (Shape::OneString { fixed }, _) => {
                self.skip(fixed)?;
                self.skip_string()
            }
            (Shape::Counted, _) => self.repeat(|r| r.skip_element(t)),
            (_, 7) => {
                self.plain_len()?;
                self.skip_module_opcodes()
            }
            (_, 15 | 19 | 21) => self.skip_stream(t),
            (_, 22 | 24) => {
                if t == 24 {
                    self.skip(8)?; // earliest field expiry
                }
                self.repeat(|r| {
                    r.plain_len()?; // field TTL
                    r.skip_string()?;
                    r.skip_string()
                })
            }
            (_, 6) => Err(RdbError::Unsupported(
                "a module value from a Redis 4.0 release candidate".into(),
            )),
            (_, other) => Err(RdbError::Unsupported(format!(
                "value type {other} (written by a newer Redis)"
            ))),
        }
    }

    /// One element of a [`Shape::Counted`] value.
    fn skip_element(&mut self, t: u8) -> Result<()> {
        match t {
            1 | 2 | 14 => self.skip_string(),
            3 => {
                self.skip_string()?;
                self.text_double().map(drop)
            }
            4 => {
                self.skip_string()?;
                self.skip_string()
            }
            5 => {
                self.skip_string()?;
                self.skip(8)
            }
            18 => {
                self.plain_len()?; // container kind
                self.skip_string()
            }
            other => Err(bad(format!("value type {other} has no elements"))),
        }
    }

    fn skip_stream(&mut self, t: u8) -> Result<()> {
        self.repeat(|r| {
            r.skip_string()?; // master entry id
            r.skip_string() // listpack
        })?;
        self.plain_len()?; // length
        self.plain_len()?; // last id ms
        self.plain_len()?; // last id seq
        if t >= 19 {
            for _ in 0..5 {
                self.plain_len()?; // first id, max deleted id, entries added
            }
        }
        self.repeat(|r| {
            r.skip_string()?; // group name
            r.plain_len()?;
            r.plain_len()?; // last delivered id
            if t >= 19 {
                r.plain_len()?; // entries read
            }
            r.repeat(|r| r.skip(16 + 8).and_then(|_| r.plain_len().map(|_| ())))?; // PEL with delivery info
            r.repeat(|r| {
                r.skip_string()?; // consumer name
                r.skip(8)?; // seen time
                if t >= 21 {
                    r.skip(8)?; // active time
                }
                r.repeat(|r| r.skip(16)) // consumer PEL ids
            })
        })
    }

    fn skip_module_opcodes(&mut self) -> Result<()> {
        loop {
            match self.plain_len()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.plain_len()?;
                }
                3 => self.skip(4)?,
                4 => self.skip(8)?,
                5 => self.skip_string()?,
                other => return Err(bad(format!("unknown module opcode {other}"))),
            }
        }
    }

    fn repeat(&mut self, mut each: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        let n = self.plain_len()?;
        for _ in 0..n {
            each(self)?;
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.read_exact(&mut buf).map_err(eof_is_truncation)?;
        Ok(buf)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let copied = io::copy(&mut self.take(n), &mut io::sink())?;
        if copied != n {
            return Err(bad("truncated"));
        }
        Ok(())
    }

    fn len(&mut self) -> Result<Len> {
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => Len::Plain(u64::from(first & 0x3f)),
            1 => Len::Plain((u64::from(first & 0x3f) << 8) | u64::from(self.u8()?)),
            2 => match first {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Len::Plain(u64::from_be_bytes(self.array()?)),
                _ => return Err(bad(format!("invalid length prefix {first:#x}"))),
            },
            _ => Len::Encoded(first & 0x3f),
        })
    }

    fn plain_len(&mut self) -> Result<u64> {
        match self.len()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(_) => Err(bad("expected a length, found an encoded value")),
        }
    }

    /// Reads a string's header; returns how many bytes of body follow.
    fn string_head(&mut self) -> Result<u64> {
        match self.len()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(0) => Ok(1),
            Len::Encoded(1) => Ok(2),
            Len::Encoded(2) => Ok(4),
            Len::Encoded(3) => {
                let compressed = self.plain_len()?;
                self.plain_len()?;
                Ok(compressed)
            }
            Len::Encoded(e) => Err(bad(format!("unknown string encoding {e}"))),
        }
    }

    /// Reads a string's header: how many bytes of body follow, and how the
    /// body is stored unless it is an integer (a few bytes, never large).
    fn string_body(&mut self) -> Result<(u64, Option<Body>)> {
        match self.len()? {
            Len::Plain(n) => Ok((n, Some(Body::Plain(n)))),
            Len::Encoded(3) => {
                let stored = self.plain_len()?;
                let len = self.plain_len()?;
                Ok((stored, Some(Body::Lzf { stored, len })))
            }
            Len::Encoded(e @ 0..=2) => Ok((1 << e, None)),
            Len::Encoded(e) => Err(bad(format!("unknown string encoding {e}"))),
        }
    }

    fn skip_string(&mut self) -> Result<()> {
        let body = self.string_head()?;
        self.skip(body)
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        match self.string_bounded(u64::MAX)? {
            Str::Small(s) => Ok(s),
            Str::Large(_) => Err(bad("string too long")),
        }
    }

    fn string_bounded(&mut self, bound: u64) -> Result<Str> {
        let s = match self.len()? {
            Len::Plain(n) if n > bound => return Ok(Str::Large(Body::Plain(n))),
            Len::Plain(n) => {
                let mut buf = Vec::new();
                self.take(n).read_to_end(&mut buf)?;
                if buf.len() as u64 != n {
                    return Err(bad("truncated string"));
                }
                Ok(buf)
            }
            Len::Encoded(0) => Ok((self.u8()? as i8).to_string().into_bytes()),
            Len::Encoded(1) => Ok(i16::from_le_bytes(self.array()?).to_string().into_bytes()),
            Len::Encoded(2) => Ok(i32::from_le_bytes(self.array()?).to_string().into_bytes()),
            Len::Encoded(3) => {
                let compressed = self.plain_len()?;
                let plain = self.plain_len()?;
                if compressed.max(plain) > bound {
                    return Ok(Str::Large(Body::Lzf {
                        stored: compressed,
                        len: plain,
                    }));
                }
                let mut buf = Vec::new();
                self.take(compressed).read_to_end(&mut buf)?;
                lzf::decompress(
                    &buf,
                    usize::try_from(plain).map_err(|_| bad("string too long"))?,
                )
                .map_err(bad)
            }
            Len::Encoded(e) => Err(bad(format!("unknown string encoding {e}"))),
        };
        s.map(Str::Small)
    }

    /// A score in the oldest zset encoding: a length byte, then ASCII (253-255
    /// stand for NaN, +inf, -inf).
    fn text_double(&mut self) -> Result<Vec<u8>> {
        match self.u8()? {
            253 => Ok(b"nan".to_vec()),
            254 => Ok(b"inf".to_vec()),
            255 => Ok(b"-inf".to_vec()),
            len => {
                let mut text = vec![0; usize::from(len)];
                self.read_exact(&mut text).map_err(eof_is_truncation)?;
                Ok(text)
            }
        }
    }
}

fn eof_is_truncation(e: io::Error) -> RdbError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad("the file ends in the middle of a record")
    } else {
        RdbError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdb(body: &[u8]) -> Vec<u8> {
        let mut data = b"REDIS0011".to_vec();
        data.extend_from_slice(body);
        data.push(0xFF);
        data.extend_from_slice(&[0; 8]);
        data
    }

    /// Every event, with each key's value read whole.
    fn events(data: &[u8]) -> Vec<(RdbEvent, Option<Vec<u8>>)> {
        let mut reader = RdbReader::new(data).expect("header");
        let mut out = Vec::new();
        while let Some(e) = reader.next_event().expect("event") {
            let value = match &e {
                RdbEvent::Key(head) => Some(reader.value(head).expect("value")),
                _ => None,
            };
            out.push((e, value));
        }
        out
    }

    #[test]
    fn reads_keys_values_expiries_and_aux_fields() {
        let mut body = Vec::new();
        body.extend_from_slice(b"\xfa\x09redis-ver\x057.2.4");
        body.extend_from_slice(b"\xfe\x00\xfb\x02\x01");
        // A string with an integer-encoded key.
        body.extend_from_slice(b"\x00\xc0\x2a\x05hello");
        // A set (type 2) of two members, expiring at 1000 ms.
        body.extend_from_slice(b"\xfc");
        body.extend_from_slice(&1000i64.to_le_bytes());
        body.extend_from_slice(b"\x02\x03set\x02\x01a\x01b");
        let got = events(&rdb(&body));
        assert_eq!(got[0].0, RdbEvent::SelectDb(0));
        assert_eq!(
            got[1],
            (
                RdbEvent::Key(KeyHead {
                    key: b"42".to_vec(),
                    value_type: 0,
                    expire_at_ms: None,
                    idle_seconds: None,
                    lfu_freq: None
                }),
                Some(b"\x00\x05hello".to_vec())
            )
        );
        let (RdbEvent::Key(set), Some(value)) = &got[2] else {
            panic!("expected a key")
        };
        assert_eq!(set.key, b"set");
        assert_eq!(value, b"\x02\x02\x01a\x01b");
        assert_eq!(set.expire_at_ms, Some(1000));
        assert_eq!(set.type_name(), "set");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn a_value_read_in_pieces_is_the_value_read_whole() {
        let mut body = Vec::new();
        // A 100-byte string, an LZF string and a hash of two fields.
        body.extend_from_slice(b"\x00\x01s\x40\x64");
        body.extend_from_slice(&[b'x'; 100]);
        body.extend_from_slice(b"\x00\x01z\xc3\x06\x10\x01ab\xe0\x05\x01");
        body.extend_from_slice(b"\x04\x01h\x02\x01f\x02v1\x01g\xc0\x07");
        let data = rdb(&body);
        let whole: Vec<Vec<u8>> = events(&data).into_iter().filter_map(|e| e.1).collect();

        let mut reader = RdbReader::new(&data[..]).expect("header");
        let mut pieces = Vec::new();
        while let Some(RdbEvent::Key(head)) = reader.next_event().expect("event") {
            let t = head.value_type;
            let mut value = vec![t];
            match shape(t) {
                Shape::OneString { fixed } => {
                    let (string_head, len) = reader.string_head(fixed).expect("head");
                    value.extend(string_head);
                    let mut body = vec![0; usize::try_from(len).expect("len")];
                    // In two chunks, as a large body is read.
                    let half = body.len() / 2;
                    let (a, b) = body.split_at_mut(half);
                    reader.body(a).expect("body");
                    reader.body(b).expect("body");
                    value.extend(body);
                }
                Shape::Counted => {
                    let (count_head, count) = reader.count().expect("count");
                    value.extend(count_head);
                    for _ in 0..count {
                        let Element::Whole(element) = reader.element(t, u64::MAX).expect("element")
                        else {
                            panic!("no bound, no large element")
                        };
                        if t == 4 {
                            assert!(!element_args(t, &element).expect("args").is_empty());
                        }
                        value.extend(element);
                    }
                }
                Shape::Whole => value = reader.value(&head).expect("value"),
            }
            pieces.push(value);
        }
        assert_eq!(pieces, whole);
        assert_eq!(whole.len(), 3);
    }

    /// A reader positioned inside a value, as after its key.
    fn inside(data: &[u8]) -> RdbReader<&[u8]> {
        RdbReader {
            input: Source::new(data),
            version: 11,
            finished: false,
            value_pending: false,
        }
    }

    #[test]
    fn a_large_string_in_an_element_is_left_unread_and_named() {
        let big = |n: u8| [&[0x40, n][..], &vec![b'x'; usize::from(n)]].concat();
        // 6 bytes stored, 66 decoded: "ab", then 64 bytes 2 back.
        let lzf_value = b"\xc3\x06\x40\x42\x01ab\xe0\x37\x01".to_vec();
        let score = 2.5f64.to_le_bytes();
        // Type, element, what is large, its body, what follows it.
        type Case<'a> = (u8, Vec<u8>, LargeKind, Body, &'a [u8]);
        let cases: Vec<Case> = vec![
            (1, big(70), LargeKind::Item, Body::Plain(70), b""),
            (2, big(65), LargeKind::Item, Body::Plain(65), b""),
            (
                4,
                [&b"\x01f"[..], &big(80)].concat(),
                LargeKind::Value {
                    field: b"f".to_vec(),
                },
                Body::Plain(80),
                b"",
            ),
            // A large field: its value follows.
            (
                4,
                [&big(90)[..], b"\x01v"].concat(),
                LargeKind::Field,
                Body::Plain(90),
                b"\x01v",
            ),
            // Large by its decoded length.
            (
                4,
                [&b"\x01f"[..], &lzf_value].concat(),
                LargeKind::Value {
                    field: b"f".to_vec(),
                },
                Body::Lzf { stored: 6, len: 66 },
                b"",
            ),
            // A zset member: its score follows.
            (
                5,
                [&big(70)[..], &score].concat(),
                LargeKind::Member,
                Body::Plain(70),
                &score,
            ),
            (
                3,
                [&big(70)[..], b"\x031.5"].concat(),
                LargeKind::Member,
                Body::Plain(70),
                b"\x031.5",
            ),
            // Plain and packed quicklist nodes.
            (
                18,
                [&b"\x01"[..], &big(70)].concat(),
                LargeKind::Item,
                Body::Plain(70),
                b"",
            ),
            (
                18,
                [&b"\x02"[..], &big(70)].concat(),
                LargeKind::Packed { listpack: true },
                Body::Plain(70),
                b"",
            ),
        ];
        for (t, element, kind, body, after) in cases {
            let mut rdb = inside(&element);
            let Element::Large(large) = rdb.element(t, 64).expect("element") else {
                panic!("type {t}: a large element")
            };
            assert_eq!((&large.kind, large.body), (&kind, body), "type {t}");
            // Its raw bytes, the body and what follows make the element.
            let mut rest = Vec::new();
            rdb.input.read_to_end(&mut rest).expect("rest");
            assert_eq!([&large.raw[..], &rest].concat(), element, "type {t}");
            assert_eq!(&rest[body.stored() as usize..], after, "type {t}");
            match large.known_tail(t) {
                Some(n) => assert_eq!(n as usize, after.len(), "type {t}"),
                None => assert!(t == 3 || kind == LargeKind::Field, "type {t}"),
            }
            // Under a higher bound it is an ordinary element.
            assert_eq!(
                inside(&element).element(t, 100).expect("element"),
                Element::Whole(element.clone()),
                "type {t}"
            );
        }
    }

    #[test]
    fn a_large_body_is_decoded_as_it_is_read() {
        // "hello", then an LZF string of 12 bytes (6 stored: "ab", then 10
        // bytes 2 back), then a binary score.
        let data = [
            &b"\x05hello\xc3\x06\x0c\x01ab\xe0\x01\x01"[..],
            &2.5f64.to_le_bytes(),
            b"rest",
        ]
        .concat();
        let mut rdb = inside(&data);
        assert_eq!(
            rdb.string_bounded(100).expect("small"),
            Str::Small(b"hello".to_vec())
        );
        let Str::Large(body) = rdb.string_bounded(4).expect("large") else {
            panic!("an LZF string above the bound")
        };
        assert_eq!(body, Body::Lzf { stored: 6, len: 12 });
        let mut out = Vec::new();
        rdb.decoded(body).read_to_end(&mut out).expect("lzf");
        assert_eq!(out, b"abababababab");
        assert_eq!(rdb.score(5).expect("score"), b"2.5e0");
        let mut rest = Vec::new();
        rdb.input.read_to_end(&mut rest).expect("rest");
        assert_eq!(rest, b"rest");
        let mut plain = inside(b"abc");
        let mut out = Vec::new();
        plain
            .decoded(Body::Plain(5))
            .read_to_end(&mut out)
            .expect("read");
        assert_eq!(
            out, b"abc",
            "a short body ends early; read_exact reports it"
        );
        assert!(matches!(
            read_error(io::Error::new(io::ErrorKind::UnexpectedEof, "eof")),
            RdbError::Format(_)
        ));
        assert!(matches!(
            read_error(io::Error::new(io::ErrorKind::InvalidData, "bad LZF")),
            RdbError::Format(_)
        ));
        assert!(matches!(
            read_error(io::Error::other("store")),
            RdbError::Io(_)
        ));
    }

    #[test]
    fn a_key_whose_value_was_not_read_is_refused() {
        let data = rdb(b"\x00\x01a\x01x\x00\x01b\x01y");
        let mut reader = RdbReader::new(&data[..]).expect("header");
        assert!(matches!(reader.next_event(), Ok(Some(RdbEvent::Key(_)))));
        assert!(reader.next_event().is_err());
    }

    #[test]
    fn elements_become_command_arguments() {
        let args = |t, raw: &[u8]| element_args(t, raw).expect("args");
        assert_eq!(args(2, b"\x01m"), vec![b"m".to_vec()]);
        // A hash field whose value is an integer-encoded string.
        assert_eq!(
            args(4, b"\x01f\xc1\x39\x30"),
            vec![b"f".to_vec(), b"12345".to_vec()]
        );
        // zset2: member, then a binary double; ZADD wants the score first.
        let mut zset2 = b"\x01m".to_vec();
        zset2.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(args(5, &zset2), vec![b"1.5e0".to_vec(), b"m".to_vec()]);
        assert_eq!(
            args(3, b"\x01m\x033.5"),
            vec![b"3.5".to_vec(), b"m".to_vec()]
        );
        assert_eq!(args(3, b"\x01m\xff"), vec![b"-inf".to_vec(), b"m".to_vec()]);
        // A plain quicklist node holds one item as it is.
        assert_eq!(args(18, b"\x01\x03big"), vec![b"big".to_vec()]);
        assert!(element_args(0, b"\x01x").is_err());
        assert!(element_args(18, b"\x07\x01x").is_err());
    }

    #[test]
    fn scores_are_written_to_read_back_exactly() {
        for score in [
            0.1,
            -0.0,
            1e300,
            5e-324,
            f64::MAX,
            123_456_789.123_456_78,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let text = String::from_utf8(score_text(score)).expect("ascii");
            let back: f64 = text.parse().expect("parses");
            assert_eq!(back.to_bits(), score.to_bits(), "{text}");
        }
        assert_eq!(score_text(f64::INFINITY), b"inf");
        assert_eq!(score_text(f64::NEG_INFINITY), b"-inf");
    }

    #[test]
    fn lengths_encode_as_the_reader_reads_them() {
        for n in [
            0,
            1,
            63,
            64,
            300,
            16383,
            16384,
            70_000,
            u64::from(u32::MAX),
            1 << 40,
        ] {
            let encoded = encode_len(n);
            let mut source = Source::new(&encoded[..]);
            assert_eq!(source.plain_len().expect("len"), n);
            assert_eq!(source.inner.len(), 0, "{n}: every byte read");
        }
        assert_eq!(encode_len(5), [5]);
        assert_eq!(encode_len(300), [0x41, 0x2c]);
    }

    #[test]
    fn truncated_and_unknown_input_fails_clearly() {
        let mut reader = RdbReader::new(&b"REDIS0011\x00\x03ke"[..]).expect("header");
        assert!(reader.next_event().is_err());
        let mut reader = RdbReader::new(&b"REDIS0011\x63\x01k\x00"[..]).expect("header");
        let Ok(Some(RdbEvent::Key(head))) = reader.next_event() else {
            panic!("a key")
        };
        assert!(matches!(reader.value(&head), Err(RdbError::Unsupported(_))));
        let mut reader = RdbReader::new(&b"REDIS0011\x00\x01k\x05ab"[..]).expect("header");
        let Ok(Some(RdbEvent::Key(_))) = reader.next_event() else {
            panic!("a key")
        };
        let (_, len) = reader.string_head(0).expect("head");
        assert_eq!(len, 5);
        assert!(reader.body(&mut [0; 5]).is_err(), "the body is cut short");
        assert!(RdbReader::new(&b"PGDMP0011"[..]).is_err());
    }
}
