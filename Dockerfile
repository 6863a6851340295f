# Multi-stage build: compile in the Rust image, run in a small Debian image as non-root.
FROM rust:1-bookworm AS build
WORKDIR /src
# The manifest names test and bench targets, so their sources come along (see .dockerignore).
COPY . .
RUN cargo build --release --locked --bin label-gateway

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
ENV LABEL_GATEWAY_SERVER__LISTEN=0.0.0.0:8080 \
    LABEL_GATEWAY_SERVER__INTERNAL_LISTEN=0.0.0.0:9090 \
    LABEL_GATEWAY_STORAGE__LOCAL_ROOT=/var/lib/label-gateway/shipping_labels
USER label-gateway
EXPOSE 8080 9090
ENTRYPOINT ["label-gateway", "--config", "/etc/label-gateway/config.toml"]
CMD ["serve"]
