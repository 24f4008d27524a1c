# ringhttpd container image.
#
#   docker build -t ringhttpd .
#   docker run --rm -p 8080:8080 \
#     --security-opt seccomp=deploy/seccomp-io_uring.json \
#     --ulimit memlock=-1 \
#     ringhttpd
#
# io_uring in containers: Docker's default seccomp profile (Engine 25 and
# later) refuses io_uring_setup, so the server stops at start with a one-line
# error saying so. deploy/seccomp-io_uring.json allows it; see
# deploy/README.md. The host kernel must allow io_uring too
# (sysctl kernel.io_uring_disabled = 0).
#
# Stages: builder (release build), test (docker-compose.yml's "tests"
# service), runtime (the default, last stage).
#
# Base images are build arguments. The defaults come from Docker Hub; where no
# registry can be reached, deploy/base-images.sh builds both from Debian
# packages (with the crates of Cargo.lock inside) and prints the arguments:
#   docker build --build-arg BUILDER_IMAGE=ringhttpd-base/build:trixie \
#     --build-arg RUNTIME_IMAGE=ringhttpd-base/runtime:trixie \
#     --build-arg CARGO_OFFLINE=true -t ringhttpd .
# The runtime image needs the builder's glibc or a newer one.
# No "# syntax=" line: it would make BuildKit fetch a frontend image from
# Docker Hub even when both base images are local.
ARG BUILDER_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- builder -------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS builder
# true: cargo uses only the crates already in CARGO_HOME (deploy/base-images.sh).
ARG CARGO_OFFLINE=false
ENV CARGO_NET_OFFLINE=${CARGO_OFFLINE}
WORKDIR /src

# Dependencies first, compiled against stub sources, so that editing src/
# does not rebuild them. Best effort: if the stub does not build, the real
# build below still does everything.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && { cargo build --release --locked || echo "dependency pre-build skipped"; } \
 && rm -rf src

COPY . .
# COPY keeps the files' own timestamps, which can be older than the stub
# build: touch them so cargo rebuilds the crate itself.
RUN find src -type f -exec touch {} + \
 && cargo build --release --locked \
 && install -D -m 0755 target/release/ringhttpd /out/ringhttpd

# --- test (docker compose: service "tests") ------------------------------------
# Test binaries are compiled here; they run when the container starts, since
# image builds always use Docker's default seccomp profile, which has no
# io_uring. A debug build: the fault-injection hooks some tests need exist
# only there (src/test_hooks.rs).
FROM builder AS test
# The HTTPS tests need curl, openssl and python3 besides ab.
RUN missing=""; \
    for pair in ab:apache2-utils curl:curl openssl:openssl python3:python3; do \
        command -v "${pair%%:*}" >/dev/null || missing="$missing ${pair#*:}"; \
    done; \
    [ -z "$missing" ] \
 || { apt-get update \
      && apt-get install -y --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; }
RUN cargo test --locked --no-run
CMD ["deploy/compose-tests.sh"]

# --- runtime -------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
RUN groupadd --system --gid 10001 ringhttpd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin ringhttpd
COPY --from=builder /out/ringhttpd /usr/local/bin/ringhttpd
# The sample site; mount your own over it: -v /path/to/site:/srv/www:ro
COPY www/ /srv/www/
USER 10001:10001
EXPOSE 8080
# SIGTERM = graceful stop: in-flight responses get up to --shutdown-timeout
# (30 s); give "docker stop" more than that: docker stop -t 40.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ringhttpd"]
CMD ["-a", "0.0.0.0", "-p", "8080", "-r", "/srv/www"]
