# vertice-controller: one binary on distroless (glibc, CA certificates),
# non-root. scripts/build-images builds the same image without Docker;
# tests/tests/images.rs keeps the two in step (suite, user, paths).
#   docker build -f images/controller.Dockerfile -t vertice/controller .
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-trixie AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vertice-controller \
 && cp target/release/vertice-controller /vertice-controller

FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=build /vertice-controller /usr/local/bin/vertice-controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vertice-controller"]
