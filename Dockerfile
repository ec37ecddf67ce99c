# syntax=docker/dockerfile:1
# stuck-hr-recovery: a static (musl) release binary on distroless static.
# The build command is the same as scripts/build-static's (a test checks it).

FROM rust:1.95-bookworm AS builder
# ring's C code needs the musl cross compiler (x86_64-linux-musl-gcc).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin stuck-hr-recovery

# distroless static: no shell, no package manager, CA roots and /etc/passwd
# for the nonroot user only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /src/target/x86_64-unknown-linux-musl/release/stuck-hr-recovery /stuck-hr-recovery
USER 65532:65532
ENTRYPOINT ["/stuck-hr-recovery"]
