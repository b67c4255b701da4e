# vertice-agent: the Rust binary plus the PostgreSQL client tools it runs
# (pg_dump, pg_restore, psql). pg_dump must be at least as new as every server
# it backs up, so the image carries the newest major from the PGDG repository.
#   docker build -f images/agent.Dockerfile -t vertice/agent .
ARG RUST_VERSION=1.95
ARG PG_MAJOR=18

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vertice-agent \
 && cp target/release/vertice-agent /vertice-agent

FROM debian:bookworm-slim
ARG PG_MAJOR
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-${PG_MAJOR} \
 && apt-get purge -y curl gnupg && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /vertice-agent /usr/local/bin/vertice-agent
# Non-root, as the CronJob's security context requires (uid 65532).
USER 65532:65532
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH
ENTRYPOINT ["/usr/local/bin/vertice-agent"]
