# syntax=docker/dockerfile:1
#
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

# --- builder -------------------------------------------------------------------
FROM rust:1-bookworm AS builder
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
# io_uring.
FROM builder AS test
RUN apt-get update \
 && apt-get install -y --no-install-recommends apache2-utils \
 && rm -rf /var/lib/apt/lists/*
RUN cargo test --release --locked --no-run
CMD ["deploy/compose-tests.sh"]

# --- runtime -------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
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
