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
# Listen on all interfaces inside the container; the local store (if used) lives in a
# writable folder. Production sets LABEL_GATEWAY_STORAGE__BACKEND=s3 and the SPACES_*
# variables: SPACES_ACCESS_KEY_ID, SPACES_SECRET_ACCESS_KEY, SPACES_BUCKET_NAME,
# SPACES_REGION, SPACES_ENDPOINT_URL.
ENV LABEL_GATEWAY_SERVER__LISTEN=0.0.0.0:8080 \
    LABEL_GATEWAY_STORAGE__LOCAL_ROOT=/var/lib/label-gateway/shipping_labels
USER label-gateway
EXPOSE 8080
ENTRYPOINT ["label-gateway", "--config", "/etc/label-gateway/config.toml"]
CMD ["serve"]
