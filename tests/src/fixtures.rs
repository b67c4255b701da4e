//! Data sets the suites load into real servers.

/// A PostgreSQL database that exercises what pg_dump must carry: many column
/// types, several schemas, sequences, views, functions, triggers, large
/// objects and non-ASCII text.
pub const RICH_POSTGRES_SCHEMA: &str = r#"
CREATE SCHEMA sales;
CREATE SCHEMA "Audit Trail";
CREATE TYPE sales.status AS ENUM ('new', 'paid', 'shipped', 'отменён');
CREATE TYPE sales.money_pair AS (amount numeric(12,2), currency char(3));
CREATE SEQUENCE sales.invoice_no START 1000 INCREMENT 7;

CREATE TABLE sales.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    email varchar(200) UNIQUE,
    country char(2),
    vip boolean DEFAULT false,
    created timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00',
    birthday date,
    tags text[],
    profile jsonb,
    raw json,
    avatar bytea,
    ip inet,
    net cidr,
    mac macaddr,
    location point,
    area box,
    search tsvector,
    uid uuid,
    ratio double precision,
    score real,
    small smallint,
    price numeric(20,6),
    cash money,
    flags bit varying(16),
    wake time,
    wake_tz timetz,
    span interval,
    during tstzrange,
    doc xml
);

CREATE TABLE sales.orders (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES sales.customers(id) ON DELETE CASCADE,
    invoice integer NOT NULL DEFAULT nextval('sales.invoice_no'),
    status sales.status NOT NULL DEFAULT 'new',
    total sales.money_pair,
    lines jsonb NOT NULL DEFAULT '[]',
    CHECK ((total).amount >= 0)
);
CREATE INDEX orders_status ON sales.orders (status) WHERE status <> 'shipped';
CREATE INDEX customers_profile ON sales.customers USING gin (profile);

CREATE TABLE "Audit Trail"."Événements" (
    "Horodatage" timestamp NOT NULL,
    "Détail" text COLLATE "C",
    payload bytea
);

CREATE FUNCTION sales.order_total(o sales.orders) RETURNS numeric
    LANGUAGE sql IMMUTABLE AS $$ SELECT (o.total).amount $$;

CREATE FUNCTION "Audit Trail".log_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO "Audit Trail"."Événements" VALUES ('2026-01-01', 'commande ' || NEW.id, NULL);
    RETURN NEW;
END $$;
CREATE TRIGGER orders_audit AFTER INSERT ON sales.orders FOR EACH ROW EXECUTE FUNCTION "Audit Trail".log_order();

CREATE VIEW sales.paid_orders AS
    SELECT o.id, c.name, sales.order_total(o) AS amount FROM sales.orders o JOIN sales.customers c ON c.id = o.customer_id
    WHERE o.status = 'paid';

INSERT INTO sales.customers (name, email, country, vip, birthday, tags, profile, raw, avatar, ip, net, mac, location, area,
    search, uid, ratio, score, small, price, cash, flags, wake, wake_tz, span, during, doc)
SELECT
    (ARRAY['Zoë Ångström', '山田 太郎', 'Ну́жно Юникод', 'Ólafur 🚀 Þór', E'O''Brien\ttab'])[1 + g % 5] || ' #' || g,
    'user' || g || '@example.com',
    (ARRAY['DE', 'JP', 'RU', 'IS', 'IE'])[1 + g % 5],
    g % 3 = 0,
    DATE '1970-01-01' + (g * 37 % 20000),
    ARRAY['tag' || (g % 7), 'ünïcode', NULL],
    jsonb_build_object('n', g, 'nested', jsonb_build_object('arr', jsonb_build_array(g, g * 1.5, 'x')), 'emoji', '😀'),
    ('{"k": ' || g || ', "dup": 1, "dup": 2}')::json,
    decode(md5(g::text), 'hex'),
    ('10.' || (g % 256) || '.0.1')::inet,
    '192.168.0.0/16',
    '08:00:2b:01:02:03',
    point(g, -g),
    box(point(0, 0), point(g, g)),
    to_tsvector('english', 'the quick brown fox ' || g),
    md5(g::text)::uuid,
    g / 7.0,
    g / 3.0,
    (g % 32000)::smallint,
    g * 1234.567891,
    (g * 1.25)::numeric::money,
    (g % 65536)::bit(16)::varbit,
    TIME '04:05:06.789',
    TIMETZ '04:05:06+02',
    make_interval(days => g % 40, secs => g),
    tstzrange('2026-01-01', '2026-01-01'::timestamptz + make_interval(hours => g)),
    xmlparse(document '<a n="' || g || '">ü</a>')
FROM generate_series(1, 3000) g;

INSERT INTO sales.orders (customer_id, status, total, lines)
SELECT 1 + g % 3000, (ARRAY['new', 'paid', 'shipped', 'отменён']::sales.status[])[1 + g % 4], ROW(g * 2.5, 'EUR')::sales.money_pair,
       jsonb_build_array(jsonb_build_object('sku', 'A-' || g, 'qty', g % 9))
FROM generate_series(1, 5000) g;

INSERT INTO "Audit Trail"."Événements" VALUES ('2028-02-29 12:00:00', NULL, '\x00ff00'), ('1999-12-31 23:59:59.999999', '', NULL);

SELECT lo_from_bytea(0, convert_to(repeat('large object ✓ ', 20000), 'UTF8'));
SELECT lo_from_bytea(0, decode(repeat('00ff', 5000), 'hex'));

CREATE MATERIALIZED VIEW sales.status_counts AS SELECT status, count(*) FROM sales.orders GROUP BY status;
SELECT setval('sales.invoice_no', 99999);
"#;

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
