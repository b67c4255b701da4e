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
