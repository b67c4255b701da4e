# vertice-agent: the Rust binary plus the PostgreSQL client tools it runs
# (pg_dump, pg_restore, psql), the libraries its Kafka client links (OpenSSL,
# zlib), and the PostgreSQL server and valkey-server
# its restore drills start inside the pod. pg_dump must be at least as new as every server
# it backs up, so the image carries the newest major the tests cover, from
# Debian trixie. scripts/build-images builds the same image without Docker;
# tests/tests/images.rs keeps the two in step (suite, major, user, paths).
#   docker build -f images/agent.Dockerfile -t vertice/agent .
ARG RUST_VERSION=1.95
ARG PG_MAJOR=17

FROM rust:${RUST_VERSION}-trixie AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vertice-agent \
 && cp target/release/vertice-agent /vertice-agent

FROM debian:trixie-slim
ARG PG_MAJOR
# The suite pins the package versions, as in scripts/build-images.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client-${PG_MAJOR} \
      postgresql-${PG_MAJOR} valkey-server libssl3t64 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /vertice-agent /usr/local/bin/vertice-agent
# Non-root, as the CronJob's security context requires (uid 65532).
USER 65532:65532
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:/usr/local/bin:/usr/bin:/bin
ENTRYPOINT ["/usr/local/bin/vertice-agent"]
