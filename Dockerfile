# syntax=docker/dockerfile:1
#
# The SplitSave server image (docs/deploy.md):
#
#   docker build -t splitsave .
#   docker run -p 3000:3000 splitsave     # a try: development mode, SQLite inside the container
#
# Every build step is deploy/image-build.sh, which CI runs too (with the dev profile), since
# CI has no container engine: a change that breaks a step here fails CI first.

# The toolchain CI builds with; the workspace needs at least its rust-version (Cargo.toml).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches outlive a build, so a source change recompiles the workspace
# crates, not every dependency. The binary is copied out of the cache into /stage.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    deploy/image-build.sh build release /stage
# The staged binary needs no library the runtime image lacks, migrates a fresh database, and
# serves, answers its health check and drains: the image is not made if it cannot.
RUN deploy/image-build.sh check /stage

# glibc, libgcc, CA certificates (SMTP over TLS, the push services) and a non-root user; no
# shell and no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /stage/usr/local/bin/splitsave /usr/local/bin/splitsave
# 65532 is the base image's `nonroot` user: the SQLite file, when DATABASE_URL is not set, and
# the development secrets live here.
COPY --from=build --chown=65532:65532 /stage/var/lib/splitsave /var/lib/splitsave
USER 65532:65532
WORKDIR /var/lib/splitsave
ENV SPLITSAVE_DATA_DIR=/var/lib/splitsave PORT=3000
EXPOSE 3000
# Ready means the database answers (/readyz): a node that lost PostgreSQL shows unhealthy. A
# draining node answers 503 too, and exits within 10 s of SIGTERM (Docker's default grace).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/splitsave", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/splitsave"]
CMD ["serve"]
