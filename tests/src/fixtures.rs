//! Data sets the suites load into real servers.

/// A PostgreSQL database that exercises what pg_dump must carry: many column
/// types, several schemas, sequences, views, functions, triggers, large
/// objects and non-ASCII text.
pub const RICH_POSTGRES_SCHEMA: &str = include_str!("../fixtures/rich_postgres.sql");

/// Fills a Redis with every data type, in both the compact and the large
/// encodings, across two databases, with TTLs, functions and a stream with a
/// consumer group.
pub fn fill_redis(conn: &mut redis::Connection) {
    let mut cmd = |args: &[&str]| {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.exec(&mut *conn)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    };
    cmd(&["SET", "string:small", "hello"]);
    cmd(&["SET", "string:int", "-12345"]);
    cmd(&["SET", "string:bin", "\u{0}\u{1}\u{ff}binary"]);
    let long_key = format!("string:long-key-{}", "k".repeat(200));
    let long_value = "compressible value ".repeat(500);
    cmd(&["SET", &long_key, &long_value]);
    cmd(&["SET", "string:unicode", "Zoë 山田 🚀"]);
    cmd(&["SET", "ttl:string", "expires", "EX", "3600"]);
    cmd(&["SET", "ttl:ms", "soon-ish", "PX", "7200000"]);
    cmd(&["RPUSH", "list:small", "a", "b", "c", "1", "2"]);
    for chunk in 0..20 {
        let items: Vec<String> = (0..100)
            .map(|i| format!("item-{chunk}-{i}-{}", "x".repeat(i % 50)))
            .collect();
        let mut args = vec!["RPUSH", "list:big"];
        args.extend(items.iter().map(String::as_str));
        cmd(&args);
    }
    cmd(&["SADD", "set:ints", "1", "2", "3", "100000"]);
    cmd(&["SADD", "set:small", "x", "y", "z"]);
    let members: Vec<String> = (0..600).map(|i| format!("member-{i}")).collect();
    let mut args = vec!["SADD", "set:big"];
    args.extend(members.iter().map(String::as_str));
    cmd(&args);
    cmd(&["ZADD", "zset:small", "1", "a", "2.5", "b", "-3", "c"]);
    let scored: Vec<String> = (0..300)
        .flat_map(|i| [format!("{}.25", i), format!("player-{i}")])
        .collect();
    let mut args = vec!["ZADD", "zset:big"];
    args.extend(scored.iter().map(String::as_str));
    cmd(&args);
    cmd(&["HSET", "hash:small", "f1", "v1", "f2", "v2"]);
    let fields: Vec<String> = (0..400)
        .flat_map(|i| [format!("field-{i}"), format!("value-{i}")])
        .collect();
    let mut args = vec!["HSET", "hash:big"];
    args.extend(fields.iter().map(String::as_str));
    cmd(&args);
    cmd(&["EXPIRE", "hash:big", "86400"]);
    for i in 0..50 {
        cmd(&[
            "XADD",
            "stream:orders",
            "*",
            "order",
            &i.to_string(),
            "state",
            "new",
        ]);
    }
    cmd(&["XGROUP", "CREATE", "stream:orders", "billing", "0"]);
    cmd(&[
        "XREADGROUP",
        "GROUP",
        "billing",
        "worker-1",
        "COUNT",
        "10",
        "STREAMS",
        "stream:orders",
        ">",
    ]);
    cmd(&["XDEL", "stream:orders", "0-1"]);
    cmd(&["PFADD", "hll:visitors", "a", "b", "c", "d"]);
    cmd(&["SETBIT", "bitmap:flags", "1000", "1"]);
    cmd(&[
        "GEOADD",
        "geo:cities",
        "13.361389",
        "38.115556",
        "Palermo",
        "15.087269",
        "37.502669",
        "Catania",
    ]);
    cmd(&["FUNCTION", "LOAD", "#!lua name=vertice\nredis.register_function('vertice_echo', function(keys, args) return args[1] end)"]);
    cmd(&["SELECT", "5"]);
    cmd(&["SET", "db5:key", "in database five", "EX", "5000"]);
    cmd(&["SELECT", "0"]);
}

/// One key as it must survive a round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisKey {
    pub db: i64,
    pub key: String,
    pub kind: String,
    /// The logical content, normalised (sets and hashes sorted).
    pub content: Vec<String>,
    /// TTL rounded to the minute (it ticks down between snapshot and restore); -1 for none.
    pub ttl_minutes: i64,
}

fn strings(conn: &mut redis::Connection, cmd: &mut redis::Cmd) -> Vec<String> {
    let values: Vec<Vec<u8>> = cmd.query(conn).expect("read value");
    values
        .into_iter()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

/// Everything that must survive a round trip, per database and key.
pub fn redis_snapshot(conn: &mut redis::Connection) -> Vec<RedisKey> {
    let mut out = Vec::new();
    for db in 0..16i64 {
        redis::cmd("SELECT")
            .arg(db)
            .exec(&mut *conn)
            .expect("select");
        let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut *conn).expect("keys");
        keys.sort();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query(&mut *conn)
                .expect("type");
            let mut content = match kind.as_str() {
                "string" => {
                    let v: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut *conn).expect("get");
                    vec![format!("{v:?}")]
                }
                "list" => strings(conn, redis::cmd("LRANGE").arg(&key).arg(0).arg(-1)),
                "set" => strings(conn, redis::cmd("SMEMBERS").arg(&key)),
                "zset" => strings(
                    conn,
                    redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES"),
                ),
                "hash" => strings(conn, redis::cmd("HGETALL").arg(&key))
                    .chunks(2)
                    .map(|kv| kv.join("="))
                    .collect(),
                "stream" => {
                    let entries: redis::Value = redis::cmd("XRANGE")
                        .arg(&key)
                        .arg("-")
                        .arg("+")
                        .query(&mut *conn)
                        .expect("xrange");
                    let groups: redis::Value = redis::cmd("XINFO")
                        .arg("GROUPS")
                        .arg(&key)
                        .query(&mut *conn)
                        .expect("xinfo");
                    let pending: redis::Value = redis::cmd("XPENDING")
                        .arg(&key)
                        .arg("billing")
                        .query(&mut *conn)
                        .unwrap_or(redis::Value::Nil);
                    vec![
                        format!("{entries:?}"),
                        format!("{groups:?}"),
                        format!("{pending:?}"),
                    ]
                }
                other => panic!("unexpected type {other}"),
            };
            if matches!(kind.as_str(), "set" | "hash") {
                content.sort();
            }
            let pttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query(&mut *conn)
                .expect("pttl");
            let ttl_minutes = if pttl < 0 {
                pttl
            } else {
                (pttl + 30_000) / 60_000
            };
            out.push(RedisKey {
                db,
                key: String::from_utf8_lossy(&key).into_owned(),
                kind,
                content,
                ttl_minutes,
            });
        }
    }
    redis::cmd("SELECT")
        .arg(0)
        .exec(&mut *conn)
        .expect("select");
    out
}

/// Fails with the keys that differ (not the whole data set).
#[track_caller]
pub fn assert_same_redis(actual: &[RedisKey], expected: &[RedisKey], what: &str) {
    let describe =
        |k: &RedisKey| format!("db{} {} ({}, ttl {}m)", k.db, k.key, k.kind, k.ttl_minutes);
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !actual.iter().any(|a| a.db == e.db && a.key == e.key))
        .map(describe)
        .collect();
    let extra: Vec<String> = actual
        .iter()
        .filter(|a| !expected.iter().any(|e| a.db == e.db && a.key == e.key))
        .map(describe)
        .collect();
    let changed: Vec<String> = actual
        .iter()
        .filter_map(|a| {
            let e = expected.iter().find(|e| a.db == e.db && a.key == e.key)?;
            (a != e).then(|| format!("{} vs expected {}", describe(a), describe(e)))
        })
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && changed.is_empty(),
        "{what}: missing {missing:?}, unexpected {extra:?}, changed {changed:?}"
    );
}

/// A fresh age key pair from `age-keygen`: (identity file, public key).
pub fn age_keypair(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let keygen = crate::process::require_binary("age-keygen", &[], "apt-get install age");
    let path = dir.join(name);
    let out = std::process::Command::new(keygen)
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen");
    assert!(out.status.success(), "age-keygen failed");
    let text = std::fs::read_to_string(&path).expect("key");
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key line")
        .to_string();
    (path, public)
}
