# shellcheck shell=bash
# The benchmark database: an orders table with realistic entropy
# (timestamps, numbers, words, ids, jsonb) plus indexes, compressing roughly
# 3-5x with zstd. Needs psql_ from scripts/lib/servers.sh.

generate() { # db, target MiB
  local db=$1 target=$(( $2 * 1024 * 1024 ))
  psql_ -d postgres -c "CREATE DATABASE $db"
  psql_ -d "$db" <<'SQL'
CREATE TABLE orders (
  id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, customer_id int NOT NULL, sku text NOT NULL,
  quantity int NOT NULL, unit_price numeric(10,2) NOT NULL, status text NOT NULL, city text NOT NULL,
  comment text, attributes jsonb NOT NULL);
CREATE FUNCTION words(n int, seed int) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg((ARRAY['delivery','late','great','product','return','refund','quality','package','damaged',
    'fast','service','again','colour','size','fits','perfect','broken','replacement','order','customer','support',
    'thanks','would','recommend','not','very','happy','with','the','and','arrived','early','box','gift','price',
    'cheap','expensive','worth','it','small','large','box','missing','part','instructions','easy','hard','use'])
    [1 + ((seed * 7919 + i * 104729 + (random() * 48)::int) % 48)], ' ') FROM generate_series(1, n) i
$$;
SQL
  local size=0
  while [ "$size" -lt "$target" ]; do
    psql_ -d "$db" -c "
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
FROM generate_series(1, 250000) g"
    size=$(psql_ -d "$db" -Atc "SELECT pg_database_size('$db')")
  done
  psql_ -d "$db" -c "CREATE INDEX ON orders (customer_id)" -c "CREATE INDEX ON orders (created_at)" -c "VACUUM ANALYZE orders"
  psql_ -d "$db" -Atc "SELECT pg_size_pretty(pg_database_size('$db')) || ', ' || count(*) || ' rows' FROM orders"
}

