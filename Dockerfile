# Multi-stage build: compile in the Rust image, run in a small Debian image as non-root.
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: built against stand-in sources, so it is
# rebuilt only when Cargo.toml or Cargo.lock change, not on every source edit. The
# manifest names test and bench targets, so each gets a stand-in file too.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/it benches/load \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for f in tests/it/main.rs tests/streaming.rs tests/proxy_env.rs \
                benches/micro.rs benches/load/main.rs; do echo 'fn main() {}' > "$f"; done \
    && cargo build --release --locked --bin label-gateway \
    && rm -rf src tests benches
# Then the real sources (see .dockerignore); touched so cargo rebuilds the gateway itself
# whatever times the copied files carry.
COPY . .
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin label-gateway

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home label-gateway \
    && mkdir -p /etc/label-gateway /var/lib/label-gateway/shipping_labels \
    && chown label-gateway /var/lib/label-gateway/shipping_labels
COPY --from=build /src/target/release/label-gateway /usr/local/bin/label-gateway
COPY config.toml /etc/label-gateway/config.toml
# Listen on all interfaces inside the container: 8080 serves labels (publish it, or let
# nginx reach it); 9090 serves /internal/... and /metrics for the Django app and Prometheus
# on the private network (never publish it). The local store (if used) lives in a writable
# folder. Production sets LABEL_GATEWAY_STORAGE__BACKEND=s3 and the SPACES_* variables:
# SPACES_ACCESS_KEY_ID, SPACES_SECRET_ACCESS_KEY, SPACES_BUCKET_NAME, SPACES_REGION,
# SPACES_ENDPOINT_URL; and LABEL_GATEWAY_SERVER__TRUSTED_PROXIES to nginx's address.
# LABEL_GATEWAY_CONFIG names the configuration file for every command (the server and
# its health check alike).
ENV LABEL_GATEWAY_CONFIG=/etc/label-gateway/config.toml \
    LABEL_GATEWAY_SERVER__LISTEN=0.0.0.0:8080 \
    LABEL_GATEWAY_SERVER__INTERNAL_LISTEN=0.0.0.0:9090 \
    LABEL_GATEWAY_STORAGE__LOCAL_ROOT=/var/lib/label-gateway/shipping_labels
USER label-gateway
EXPOSE 8080 9090
# SIGTERM drains: new connections are refused and requests in flight get up to
# [server] shutdown_grace (30 s by default) to finish. Docker sends SIGKILL 10 s after
# SIGTERM unless told otherwise, so give the container a stop timeout of at least
# shutdown_grace: `docker run --stop-timeout 35`, or compose's `stop_grace_period: 35s`.
STOPSIGNAL SIGTERM
# GET /healthz on the configured listen address (the image has no curl): exit 0 when the
# gateway answers 200, 1 otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["label-gateway", "health", "--timeout", "3s"]
ENTRYPOINT ["label-gateway"]
CMD ["serve"]
