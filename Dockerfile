# syntax=docker/dockerfile:1
# stuck-hr-recovery: a static (musl) release binary and the CA roots, FROM
# scratch: the same files, user and entrypoint as scripts/build-image's
# images (tests/dockerfile.rs compares them). For linux/amd64 and
# linux/arm64 (`docker buildx build --platform linux/amd64,linux/arm64 .`);
# the release itself is built without Docker by scripts/build-image.

FROM rust:1.95-bookworm AS builder
ARG TARGETARCH
# ring's C code needs the musl C compiler (<arch>-linux-musl-gcc).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN case "${TARGETARCH:-amd64}" in \
        amd64) target=x86_64-unknown-linux-musl ;; \
        arm64) target=aarch64-unknown-linux-musl ;; \
        *) echo "unsupported TARGETARCH ${TARGETARCH}: use linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac \
    && rustup target add "$target" \
    && cargo build --release --locked --target "$target" --bin stuck-hr-recovery \
    && mkdir -p /out \
    && cp "target/$target/release/stuck-hr-recovery" /out/stuck-hr-recovery

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="stuck-hr-recovery" \
      org.opencontainers.image.source="https://github.com/openova/stuck-hr-recovery" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/stuck-hr-recovery /stuck-hr-recovery
USER 65532:65532
ENTRYPOINT ["/stuck-hr-recovery"]
