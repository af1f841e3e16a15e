# cluster-state-service in server mode: the API, watches, ingest from SQS,
# reconcile and the demo fleet in one process, configured only through its
# CSS_* environment variables (README "Configuration").
#
#   docker buildx build --platform linux/arm64,linux/amd64 -t css-server .
#
# The build stage compiles on the target platform, with the `server` profile
# (Cargo.toml: optimised for speed, as the watch tier needs); the runtime image is
# distroless (glibc, CA certificates, no shell) and runs as a non-root user.
# BUILDER and RUNTIME name other bases (a mirror, or images made locally:
# tests/tests/container.rs builds the default target with a builder made from
# Debian and the host's Rust toolchain, and the `prebuilt` target for arm64).
ARG BUILDER=docker.io/library/rust:1.95-bookworm
ARG RUNTIME=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER} AS build
# protoc, and protobuf's own .proto files that etcd-client's import.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile server --locked -p css-server --bin css-server \
 && install -m 0755 target/server/css-server /css-server

# What every variant shares: the user, the port, the health check.
FROM ${RUNTIME} AS runtime
# distroless' "nonroot" user (any non-zero id works: no file is written).
USER 65532:65532
ENV CSS_BIND=0.0.0.0:3000 \
    CSS_LOG_LEVEL=info
EXPOSE 3000
# No shell in the image: the binary asks its own /v1/ping.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/css-server", "healthcheck"]
ENTRYPOINT ["/css-server"]

# A binary built outside (dist/css-server in the build context).
FROM runtime AS prebuilt
COPY --chmod=0755 dist/css-server /css-server

# The default: the binary of the build stage.
FROM runtime
COPY --from=build /css-server /css-server
