# vertice-controller: one static-ish binary on distroless, non-root.
#   docker build -f images/controller.Dockerfile -t vertice/controller .
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vertice-controller \
 && cp target/release/vertice-controller /vertice-controller

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /vertice-controller /usr/local/bin/vertice-controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vertice-controller"]
