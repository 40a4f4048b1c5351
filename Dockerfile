# syntax=docker/dockerfile:1
# The image of either service, chosen with the build argument PACKAGE. Build from the
# repository root (the Cargo workspace):
#   docker build --build-arg PACKAGE=front-end -t localhost:5001/front-end:0.1.0 .
#   docker build --build-arg PACKAGE=business-logic -t localhost:5001/business-logic:0.1.0 .
# Builds for the host's architecture (amd64 or arm64): nothing names a target triple.
# Both images share the toolchain and recipe stages (and the cargo registry cache).

# Toolchain and cargo-chef, pinned.
FROM rust:1.95-trixie AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}"
WORKDIR /build

# The dependency recipe: manifests and Cargo.lock only, so it changes only when they do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The workspace package (and binary) to build: front-end or business-logic.
ARG PACKAGE
# Dependencies alone: this layer survives edits to the workspace's own sources. Cargo's
# config comes first: it sets how the bundled SQLite is built (LIBSQLITE3_FLAGS).
COPY --from=planner /build/recipe.json recipe.json
COPY .cargo .cargo
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    if [ -z "${PACKAGE}" ]; then \
      echo "set the package: docker build --build-arg PACKAGE=front-end (or business-logic) ." >&2; exit 1; \
    fi \
    && cargo chef cook --release --locked --package "${PACKAGE}" --recipe-path recipe.json
COPY . .
# The binary keeps its name; `service` points at it, so one ENTRYPOINT serves both images.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    cargo build --release --locked --package "${PACKAGE}" --bin "${PACKAGE}" \
    && mkdir -p /out/usr/local/bin \
    && cp "target/release/${PACKAGE}" "/out/usr/local/bin/${PACKAGE}" \
    && ln -s "${PACKAGE}" /out/usr/local/bin/service

# Runtime: glibc and libgcc only (no OpenSSL: the services speak plain HTTP, the mesh adds
# mTLS; SQLite is compiled in), no shell, uid 65532.
# The Kubernetes probes do the health checking (/healthz, /readyz), so no HEALTHCHECK.
FROM gcr.io/distroless/cc-debian13:nonroot
ARG PACKAGE
LABEL org.opencontainers.image.title="${PACKAGE}"
COPY --from=builder /out/ /
# distroless `nonroot` (65532), numeric so runAsNonRoot can verify it.
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/service"]
