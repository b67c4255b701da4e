# shellcheck shell=bash
# The benchmark databases, with realistic entropy (timestamps, numbers,
# words, ids, jsonb) compressing roughly 3-5x with zstd. Needs psql_ from
# scripts/lib/servers.sh.
#
#   generate DB MIB        one orders table plus indexes (bench-postgres, bench-drill)
#   generate_many DB MIB   ten tables of mixed sizes (two tiny), orders over half
#                          the rows' bytes; each with a primary key and one secondary index

# The words(n, seed) function the generators use for free text.
words_sql() {
  cat <<'SQL'
CREATE FUNCTION words(n int, seed int) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg((ARRAY['delivery','late','great','product','return','refund','quality','package','damaged',
    'fast','service','again','colour','size','fits','perfect','broken','replacement','order','customer','support',
    'thanks','would','recommend','not','very','happy','with','the','and','arrived','early','box','gift','price',
    'cheap','expensive','worth','it','small','large','box','missing','part','instructions','easy','hard','use'])
    [1 + ((seed * 7919 + i * 104729 + (random() * 48)::int) % 48)], ' ') FROM generate_series(1, n) i
$$;
SQL
}

orders_table_sql() {
  cat <<'SQL'
CREATE TABLE orders (
  id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, customer_id int NOT NULL, sku text NOT NULL,
  quantity int NOT NULL, unit_price numeric(10,2) NOT NULL, status text NOT NULL, city text NOT NULL,
  comment text, attributes jsonb NOT NULL);
SQL
}

orders_insert_sql() { # rows
  echo "
INSERT INTO orders (created_at, customer_id, sku, quantity, unit_price, status, city, comment, attributes)
SELECT timestamptz '2024-01-01' + random() * interval '730 days',
       (random() * 2000000)::int,
       'SKU-' || lpad((random() * 99999)::int::text, 5, '0'),
       1 + (random() * 9)::int,
       round((random() * 500)::numeric, 2),
       (ARRAY['new','paid','shipped','delivered','refunded','cancelled'])[1 + (random() * 5)::int],
       (ARRAY['Berlin','Tokyo','Lagos','Lima','Oslo','Austin','Pune','Porto','Cairo','Quito','Seoul','Perth'])[1 + (random() * 11)::int],
       CASE WHEN random() < 0.7 THEN words(4 + (random() * 20)::int, g) END,
       jsonb_build_object('session', md5(random()::text), 'ip', '10.' || (random()*255)::int || '.' || (random()*255)::int || '.7',
         'ua', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)','curl/8.4.0'])[1 + (random()*2)::int],
         'score', round(random()::numeric, 4), 'items', jsonb_build_array((random()*100)::int, (random()*100)::int))
FROM generate_series(1, $1) g"
}

generate() { # db, target MiB
  local db=$1 target=$(( $2 * 1024 * 1024 ))
  psql_ -d postgres -c "CREATE DATABASE $db"
  psql_ -d "$db" <<SQL
$(orders_table_sql)
$(words_sql)
SQL
  local size=0
  while [ "$size" -lt "$target" ]; do
    psql_ -d "$db" -c "$(orders_insert_sql 250000)"
    size=$(psql_ -d "$db" -Atc "SELECT pg_database_size('$db')")
  done
  psql_ -d "$db" -c "CREATE INDEX ON orders (customer_id)" -c "CREATE INDEX ON orders (created_at)" -c "VACUUM ANALYZE orders"
  psql_ -d "$db" -Atc "SELECT pg_size_pretty(pg_database_size('$db')) || ', ' || count(*) || ' rows' FROM orders"
}

# The other tables of generate_many: DDL, then one INSERT … SELECT of $1
# units (rows; three lines per unit for line_items) per table.
many_tables_sql() {
  cat <<'SQL'
CREATE TABLE events (id bigserial PRIMARY KEY, occurred_at timestamptz NOT NULL, user_id bigint NOT NULL,
  kind text NOT NULL, source text NOT NULL, payload jsonb NOT NULL);
CREATE TABLE line_items (order_id bigint NOT NULL, line int NOT NULL, sku text NOT NULL, quantity int NOT NULL,
  unit_price numeric(10,2) NOT NULL, discount numeric(4,2) NOT NULL, PRIMARY KEY (order_id, line));
CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL, full_name text NOT NULL, city text NOT NULL,
  signed_up timestamptz NOT NULL, marketing boolean NOT NULL, notes text);
CREATE TABLE audit_log (id bigserial PRIMARY KEY, at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL,
  target text NOT NULL, row_id bigint NOT NULL, old_value text, new_value text NOT NULL);
CREATE TABLE payments (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), order_id bigint NOT NULL,
  amount numeric(12,2) NOT NULL, currency char(3) NOT NULL, method text NOT NULL, paid_at timestamptz NOT NULL,
  provider_ref text NOT NULL);
CREATE TABLE sessions (token text PRIMARY KEY, customer_id bigint NOT NULL, started_at timestamptz NOT NULL,
  last_seen timestamptz NOT NULL, ip inet NOT NULL, user_agent text NOT NULL);
CREATE TABLE products (id serial PRIMARY KEY, sku text NOT NULL, title text NOT NULL, description text NOT NULL,
  price numeric(10,2) NOT NULL, stock int NOT NULL, tags text[] NOT NULL);
CREATE TABLE countries (code char(2) PRIMARY KEY, name text NOT NULL);
INSERT INTO countries VALUES ('DE','Germany'),('JP','Japan'),('NG','Nigeria'),('PE','Peru'),('NO','Norway'),
  ('US','United States'),('IN','India'),('PT','Portugal'),('EG','Egypt'),('EC','Ecuador'),('KR','South Korea'),('AU','Australia');
CREATE TABLE settings (key text PRIMARY KEY, value jsonb NOT NULL, updated_at timestamptz NOT NULL);
INSERT INTO settings SELECT 'setting.' || g, jsonb_build_object('enabled', random() < 0.5, 'limit', (random() * 1000)::int),
  timestamptz '2024-01-01' + random() * interval '730 days' FROM generate_series(1, 40) g;
SQL
}

many_insert_sql() { # table, units
  local n=$2 ts="timestamptz '2024-01-01' + random() * interval '730 days'"
  case $1 in
    orders) orders_insert_sql "$n" ;;
    events) echo "
INSERT INTO events (occurred_at, user_id, kind, source, payload)
SELECT $ts, (random() * 5000000)::bigint,
       (ARRAY['page_view','click','add_to_cart','checkout','login','logout','search','signup'])[1 + (random() * 7)::int],
       (ARRAY['web','ios','android','api'])[1 + (random() * 3)::int],
       jsonb_build_object('path', '/' || (ARRAY['home','cart','search','product','account','help'])[1 + (random() * 5)::int] || '/' || (random() * 10000)::int,
         'referrer', CASE WHEN random() < 0.4 THEN 'https://' || (ARRAY['google.com','bing.com','news.ycombinator.com','t.co'])[1 + (random() * 3)::int] || '/' END,
         'duration_ms', (random() * 30000)::int,
         'query', CASE WHEN random() < 0.2 THEN words(1 + (random() * 3)::int, g) END)
FROM generate_series(1, $n) g" ;;
    line_items) echo "
WITH b AS (SELECT coalesce(max(order_id), 0) AS base FROM line_items)
INSERT INTO line_items
SELECT b.base + g, l, 'SKU-' || lpad((random() * 99999)::int::text, 5, '0'), 1 + (random() * 9)::int,
       round((random() * 500)::numeric, 2), CASE WHEN random() < 0.8 THEN 0 ELSE round((random() * 0.5)::numeric, 2) END
FROM b, generate_series(1, $n) g, generate_series(1, 3) l" ;;
    customers) echo "
INSERT INTO customers (email, full_name, city, signed_up, marketing, notes)
SELECT lower(fn) || '.' || lower(ln) || (random() * 9999)::int || '@' || (ARRAY['example.com','mail.test','corp.example','web.test'])[1 + (random() * 3)::int],
       fn || ' ' || ln,
       (ARRAY['Berlin','Tokyo','Lagos','Lima','Oslo','Austin','Pune','Porto','Cairo','Quito','Seoul','Perth'])[1 + (random() * 11)::int],
       $ts, random() < 0.3, CASE WHEN random() < 0.3 THEN words(3 + (random() * 12)::int, g) END
FROM (SELECT g, (ARRAY['Ada','Bola','Chen','Dara','Emil','Fatima','Goran','Hana','Ines','Jun','Kofi','Lena'])[1 + (random() * 11)::int] AS fn,
             (ARRAY['Okafor','Suzuki','Silva','Hansen','Smith','Patel','Costa','Hassan','Vega','Kim','Brown','Novak'])[1 + (random() * 11)::int] AS ln
      FROM generate_series(1, $n) g) s" ;;
    audit_log) echo "
INSERT INTO audit_log (at, actor, action, target, row_id, old_value, new_value)
SELECT $ts, 'user-' || (random() * 500)::int, (ARRAY['insert','update','delete'])[1 + (random() * 2)::int],
       (ARRAY['orders','customers','products','payments'])[1 + (random() * 3)::int], (random() * 10000000)::bigint,
       CASE WHEN random() < 0.6 THEN md5(random()::text) END, words(2 + (random() * 6)::int, g)
FROM generate_series(1, $n) g" ;;
    payments) echo "
INSERT INTO payments (order_id, amount, currency, method, paid_at, provider_ref)
SELECT (random() * 50000000)::bigint, round((random() * 2000)::numeric, 2),
       (ARRAY['EUR','USD','JPY','GBP','NOK'])[1 + (random() * 4)::int],
       (ARRAY['card','card','card','paypal','transfer','voucher'])[1 + (random() * 5)::int],
       $ts, 'ch_' || substr(md5(random()::text), 1, 24)
FROM generate_series(1, $n) g" ;;
    sessions) echo "
INSERT INTO sessions (token, customer_id, started_at, last_seen, ip, user_agent)
SELECT md5(random()::text || clock_timestamp()::text || g), (random() * 2000000)::bigint, t, t + random() * interval '3 hours',
       ('10.' || (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int)::inet,
       (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)','curl/8.4.0','okhttp/4.12.0'])[1 + (random() * 3)::int]
FROM (SELECT g, $ts AS t FROM generate_series(1, $n) g) s" ;;
    products) echo "
INSERT INTO products (sku, title, description, price, stock, tags)
SELECT 'SKU-' || lpad((random() * 99999)::int::text, 5, '0'), initcap(words(2 + (random() * 3)::int, g)),
       words(20 + (random() * 60)::int, g), round((random() * 500)::numeric, 2), (random() * 1000)::int,
       ARRAY[(ARRAY['new','sale','eco','gift','bulk','limited'])[1 + (random() * 5)::int], (ARRAY['red','blue','green','black'])[1 + (random() * 3)::int]]
FROM generate_series(1, $n) g" ;;
    *) echo "many_insert_sql: no table $1" >&2; return 1 ;;
  esac
}

fill_table() { # db, table, goal bytes (heap and TOAST, before secondary indexes)
  local db=$1 table=$2 goal=$3 units=2000 inserted=0 size=0
  while :; do
    psql_ -d "$db" -c "$(many_insert_sql "$table" "$units")"
    inserted=$(( inserted + units ))
    size=$(psql_ -d "$db" -Atc "SELECT pg_table_size('$table')")
    [ "$size" -ge "$goal" ] && return 0
    # Aim at the goal from the bytes per unit so far, in batches of at most 250k.
    units=$(( (goal - size) / (size / inserted + 1) + 100 ))
    [ "$units" -gt 250000 ] && units=250000
  done
}

generate_many() { # db, target MiB
  local db=$1 target=$(( $2 * 1024 * 1024 )) table share
  psql_ -d postgres -c "CREATE DATABASE $db"
  psql_ -d "$db" <<SQL
$(orders_table_sql)
$(words_sql)
$(many_tables_sql)
SQL
  # Shares in percent of the target; orders, the largest, is over half.
  for table_share in orders:55 events:13 line_items:9 customers:7 audit_log:6 payments:4 sessions:4 products:2; do
    table=${table_share%:*}; share=${table_share#*:}
    fill_table "$db" "$table" $(( target / 100 * share ))
  done
  psql_ -d "$db" -c "CREATE INDEX ON orders (customer_id)" -c "CREATE INDEX ON events (user_id)" \
    -c "CREATE INDEX ON line_items (sku)" -c "CREATE INDEX ON customers (email)" -c "CREATE INDEX ON audit_log (at)" \
    -c "CREATE INDEX ON payments (order_id)" -c "CREATE INDEX ON sessions (customer_id)" -c "CREATE INDEX ON products (sku)" \
    -c "CREATE INDEX ON countries (name)" -c "CREATE INDEX ON settings (updated_at)" -c "VACUUM ANALYZE"
  psql_ -d "$db" -Atc "SELECT pg_size_pretty(pg_database_size('$db')) || ', ' || count(*) || ' tables; largest '
    || max(relname::text) FILTER (WHERE rank = 1) || ' ' || round(100.0 * max(s) / sum(s)) || ' % of the tables'
    FROM (SELECT relname, pg_total_relation_size(relid) AS s, rank() OVER (ORDER BY pg_total_relation_size(relid) DESC)
          FROM pg_stat_user_tables) t"
}
