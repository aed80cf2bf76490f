# syntax=docker/dockerfile:1
# sse-relay container image.
#   docker build -t REGISTRY/sse-relay:0.1.0 .
#   docker run --rm -p 8443:8443 -p 9090:9090 REGISTRY/sse-relay:0.1.0
# The image runs config/relay.toml (built-in demo origin, generated dev certificate) with the
# listeners moved to 0.0.0.0 by environment; the Helm chart (charts/sse-relay) mounts its own
# relay.toml over /etc/sse-relay/relay.toml and sets those variables itself.

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the build reads; `cargo build` checks the manifest's bench target, so benches/ too.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin sse-relay \
 && install -D -m 0755 target/release/sse-relay /out/sse-relay \
 && strip --strip-debug /out/sse-relay   # the profile's line tables: ~60 MB -> ~10 MB; symbols stay

# distroless cc: glibc, libgcc, CA certificates (for https origins), no shell; :nonroot runs
# as UID/GID 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sse-relay /usr/local/bin/sse-relay
COPY config/relay.toml /etc/sse-relay/relay.toml
ENV SSE_RELAY__SERVER__LISTEN=0.0.0.0:8443 \
    SSE_RELAY__ADMIN__LISTEN=0.0.0.0:9090 \
    SSE_RELAY_LOG=info
USER 65532:65532
# 8443: TLS (HTTP/2 and HTTP/1.1 by ALPN). 9090: admin (/healthz, /readyz, /metrics).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/sse-relay"]
CMD ["--config", "/etc/sse-relay/relay.toml"]
