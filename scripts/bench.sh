#!/usr/bin/env bash
# Side-by-side benchmark of ringhttpd against nginx, lighttpd and h2o on this
# machine, over loopback.
#
#   scripts/bench.sh [--workers N] [--rounds R] [--quick] [--only a,b]
#                    [--idle-conns N] [--no-install] [--keep-tmp]
#                    [--ringhttpd-bin PATH]
#
# Every server gets the same document root, the same number of workers,
# keep-alive and sendfile on and access logs off.  Each round starts every
# server in turn (order rotated per round), runs all workloads against it and
# stops it, so only one server is ever alive while measured.  The Markdown
# report goes to stdout and to bench-results/bench-<date>.md; progress goes
# to stderr.  Run `scripts/bench.sh --help` for the details.

set -euo pipefail
# The peers live in sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB="$REPO/scripts/bench_lib"
ALL_SERVERS=(ringhttpd nginx lighttpd h2o)
WORKLOADS=(ab small 16k 1m c2000 100m)

# ----------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------
WORKERS=2
ROUNDS=3
QUICK=0
ONLY=""
IDLE_CONNS=""
INSTALL=1
KEEP_TMP=0
# ringhttpd pins each worker to a core by default; the peers' defaults do not pin, and
# on a 2-core machine the load generator shares those cores, so the comparison runs
# ringhttpd unpinned too unless --pin asks for its default placement.
RING_PIN=0
RING_PREBUILT=""
COMMAND_LINE="scripts/bench.sh${*:+ $*}"

usage() {
  cat <<'EOF'
Usage: scripts/bench.sh [options]

Benchmarks ringhttpd against nginx, lighttpd and h2o on loopback and prints a
Markdown table (also saved to bench-results/bench-<date>.md).

Options:
  --workers N      worker processes/threads for every server (default 2)
  --rounds R       rounds per workload; medians are reported (default 3)
  --quick          smoke mode: 1 round, short runs, 1000 idle conns (~1 min)
  --only LIST      comma-separated subset of: ringhttpd,nginx,lighttpd,h2o
  --idle-conns N   idle keep-alive connections for the memory test
                   (default 10000, 1000 with --quick, 0 to skip)
  --no-install     do not apt-get install missing tools; skip missing peers
  --keep-tmp       keep the work dir (configs, raw tool output, server logs)
  --ringhttpd-bin PATH
                   benchmark this ringhttpd binary instead of building one
  --pin            run ringhttpd with its default core pinning (the default here
                   is --no-pin, since no peer pins its workers)
  -h, --help       this text

Workloads (each against every server, R rounds):
  1. ab  -n 50000 -c 100 -r -s 60 /            new connection per request
  2. wrk -t1 -c100  -d10s /index.html          keep-alive, 11-byte file
  3. wrk -t1 -c100  -d10s /16k.bin
  4. wrk -t1 -c16   -d10s /1m.bin              throughput
  5. wrk -t2 -c2000 -d10s /index.html          many keep-alive connections
  6. wrk -t1 -c1    -d10s /100m.bin            one connection streaming
plus RSS per idle keep-alive connection.
EOF
}

parse_args() {
  while (($#)); do
    case $1 in
      --workers) WORKERS=${2:?--workers needs a number}; shift ;;
      --rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
      --quick) QUICK=1 ;;
      --only) ONLY=${2:?--only needs a list}; shift ;;
      --idle-conns) IDLE_CONNS=${2:?--idle-conns needs a number}; shift ;;
      --no-install) INSTALL=0 ;;
      --keep-tmp) KEEP_TMP=1 ;;
      --ringhttpd-bin) RING_PREBUILT=${2:?--ringhttpd-bin needs a path}; shift ;;
      --pin) RING_PIN=1 ;;
      -h | --help) usage; exit 0 ;;
      *) echo "bench.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
  done
  [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: bad --workers" >&2; exit 2; }
  [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: bad --rounds" >&2; exit 2; }

  # Load sizes: the full run follows the published plan; --quick only proves
  # that every piece works, so it keeps each step to a couple of seconds.
  if ((QUICK)); then
    ROUNDS=1
    AB_N=2000 AB_C=50 DURATION=2
    : "${IDLE_CONNS:=1000}"
  else
    AB_N=50000 AB_C=100 DURATION=10
    : "${IDLE_CONNS:=10000}"
  fi
  [[ $IDLE_CONNS =~ ^[0-9]+$ ]] || { echo "bench.sh: bad --idle-conns" >&2; exit 2; }

  SERVERS=("${ALL_SERVERS[@]}")
  if [[ -n $ONLY ]]; then
    SERVERS=()
    local s k known wanted
    IFS=, read -ra wanted <<<"$ONLY"
    for s in "${wanted[@]}"; do
      known=0
      for k in "${ALL_SERVERS[@]}"; do [[ $s == "$k" ]] && known=1; done
      ((known)) || { echo "bench.sh: unknown server '$s' in --only" >&2; exit 2; }
      SERVERS+=("$s")
    done
  fi
}

# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# A note is both shown now and carried into the report, so that a reader of
# the table knows why a server or a cell is missing.
note() {
  log "NOTE: $*"
  printf '%s\n' "$*" >>"$WORK/notes.txt"
}

meta() { printf '%s\t%s\n' "$1" "$2" >>"$WORK/meta.tsv"; }

# The kernel picks a free port; it is released right away and handed to the
# server.  (ringhttpd does not need this: it binds port 0 and reports.)
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ----------------------------------------------------------------------------
# Setup steps
# ----------------------------------------------------------------------------

# 10,000 idle connections plus the client's own sockets need far more than
# the usual soft limit of 1024; servers and clients inherit this.
raise_fd_limit() {
  local hard
  hard=$(ulimit -Hn)
  ulimit -n "$hard" 2>/dev/null || ulimit -n 1048576 2>/dev/null || true
  log "file descriptor limit: $(ulimit -n)"
  if [[ $hard != unlimited ]] && ((IDLE_CONNS + 100 > hard)); then
    log "hard fd limit $hard is below --idle-conns $IDLE_CONNS + 100; lowering it"
    IDLE_CONNS=$((hard - 100))
  fi
}

# Installs what is missing: one `apt-get update`, one `apt-get install` of
# everything missing, and only if that fails (one unknown package fails the
# whole command) a retry package by package, so one failure doesn't sink the
# others.  Load generators are required; a peer that cannot be installed is
# only skipped.
apt_install() {
  ((INSTALL)) && (($#)) || return 1
  command -v apt-get >/dev/null || return 1
  [[ $(id -u) == 0 ]] || { log "not root: cannot apt-get install $*"; return 1; }
  if ((!APT_UPDATED)); then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}
APT_UPDATED=0

ensure_tools() {
  # command -> Debian package.  nginx-light is gone from newer Debian
  # releases; the retry below falls back to plain nginx.
  local -A pkg_of=([ab]=apache2-utils [wrk]=wrk [curl]=curl
    [nginx]=nginx-light [lighttpd]=lighttpd [h2o]=h2o)
  local wanted=(ab wrk curl) missing=() cmd s
  for s in "${SERVERS[@]}"; do [[ $s == ringhttpd ]] || wanted+=("$s"); done
  for cmd in "${wanted[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${pkg_of[$cmd]}")
  done
  if ((${#missing[@]})) && ! apt_install "${missing[@]}"; then
    for cmd in "${wanted[@]}"; do
      command -v "$cmd" >/dev/null && continue
      apt_install "${pkg_of[$cmd]}" || { [[ $cmd == nginx ]] && apt_install nginx; } || true
    done
  fi

  for cmd in ab wrk curl python3; do
    command -v "$cmd" >/dev/null ||
      { log "FATAL: $cmd is required and could not be installed"; exit 1; }
  done
  local keep=()
  for s in "${SERVERS[@]}"; do
    if [[ $s == ringhttpd ]] || command -v "$s" >/dev/null; then
      keep+=("$s")
    else
      note "$s is not installed and could not be installed: skipped"
    fi
  done
  SERVERS=("${keep[@]}")
}

build_ringhttpd() {
  local s keep=()
  for s in "${SERVERS[@]}"; do [[ $s == ringhttpd ]] || keep+=("$s"); done
  ((${#keep[@]} < ${#SERVERS[@]})) || return 0  # not selected
  local built="${CARGO_TARGET_DIR:-$REPO/target}/release/ringhttpd"
  if [[ -n $RING_PREBUILT ]]; then
    built=$RING_PREBUILT
    [[ -x $built ]] || { log "FATAL: --ringhttpd-bin $built is not executable"; exit 1; }
    log "using prebuilt $built"
  else
    log "cargo build --release"
  fi
  if [[ -n $RING_PREBUILT ]] || (cd "$REPO" && cargo build --release >&2) && [[ -x $built ]]; then
    # Run a copy: a rebuild in the tree during a long run must not mix two
    # versions of the server across rounds.
    RING_BIN="$WORK/ringhttpd"
    cp "$built" "$RING_BIN"
    return 0
  fi
  note "ringhttpd did not build (cargo build --release failed): skipped"
  SERVERS=("${keep[@]}")
}

# The document root: exact sizes matter, since the sanity check compares
# them.  Random bytes, so nothing along the way can compress them; the 100 MiB
# file is 100 copies of the 1 MiB one, which is fast to write.
make_docroot() {
  ROOT="$WORK/root"
  mkdir -p "$ROOT"
  printf 'hello world' >"$ROOT/index.html"  # 11 bytes
  head -c 16384 /dev/urandom >"$ROOT/16k.bin"
  head -c 1048576 /dev/urandom >"$ROOT/1m.bin"
  local i
  for ((i = 0; i < 100; i++)); do cat "$ROOT/1m.bin"; done >"$ROOT/100m.bin"
  # Servers that drop privileges must still be able to read it.
  chmod 755 "$WORK" "$ROOT"
  chmod 644 "$ROOT"/*
}

collect_meta() {
  local cpu cores
  cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
  cores=$(nproc)
  meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
  meta uname "$(uname -srm)"
  meta cpu "${cpu:-unknown}"
  meta cores "$cores"
  meta workers "$WORKERS"
  meta rounds "$ROUNDS"
  meta command "$COMMAND_LINE"
  meta clk_tck "$(getconf CLK_TCK)"
  meta idle_conns "$IDLE_CONNS"
  # Other work on the machine skews every figure; say so in the report.
  local load
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  meta loadavg "$load"
  if ((RING_PIN)); then
    note "ringhttpd ran with its default core pinning (--pin)"
  else
    note "ringhttpd ran with --no-pin, like the peers, which do not pin their workers (--pin measures the default)"
  fi
  if awk -v l="${load%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    note "the machine was not idle at the start (load average $load): figures may be skewed"
  fi
  meta servers "$(IFS=,; echo "${SERVERS[*]}")"
  meta workloads "$(IFS=,; echo "${WORKLOADS[*]}")"
  meta tools "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), ab $(ab -V | sed -n 's/.*Version \([0-9.]*\).*/\1/p')"

  local s v
  for s in "${SERVERS[@]}"; do
    case $s in
      ringhttpd)
        v=$("$RING_BIN" --version 2>/dev/null | head -1 || true)
        : "${v:=ringhttpd}"
        if [[ -n $RING_PREBUILT ]]; then
          v+=" (prebuilt $RING_PREBUILT)"
        else
          local rev
          rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || true)
          if [[ -n $(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then
            rev+="${rev:+ }+ uncommitted changes"
          fi
          [[ -n $rev ]] && v+=" ($rev)"
        fi ;;
      nginx) v=$(nginx -v 2>&1 | sed 's/.*nginx\//nginx /') ;;
      lighttpd) v=$(lighttpd -v 2>&1 | head -1 | awk '{print $1}' | tr / ' ') ;;
      h2o) v=$(h2o --version 2>&1 | head -1 | sed 's/ version / /') ;;
    esac
    meta "version.$s" "$v"
  done

  # Titles and exact commands of the workloads, for the report headings.
  meta title.ab "1. New connection per request (ab, ${AB_N} requests, ${AB_C} concurrent)"
  meta cmd.ab "ab -n $AB_N -c $AB_C -r -s 60 http://127.0.0.1:PORT/"
  meta title.small "2. Keep-alive, small file (11 bytes), 100 connections"
  meta cmd.small "wrk -t1 -c100 -d${DURATION}s http://127.0.0.1:PORT/index.html"
  meta title.16k "3. Keep-alive, 16 KiB file, 100 connections"
  meta cmd.16k "wrk -t1 -c100 -d${DURATION}s http://127.0.0.1:PORT/16k.bin"
  meta title.1m "4. Throughput, 1 MiB file, 16 connections"
  meta cmd.1m "wrk -t1 -c16 -d${DURATION}s http://127.0.0.1:PORT/1m.bin"
  meta title.c2000 "5. 2,000 concurrent keep-alive connections, small file"
  meta cmd.c2000 "wrk -t2 -c2000 -d${DURATION}s http://127.0.0.1:PORT/index.html"
  meta title.100m "6. One connection streaming the 100 MiB file (see MB/s)"
  meta cmd.100m "wrk -t1 -c1 -d${DURATION}s http://127.0.0.1:PORT/100m.bin"
}

# ----------------------------------------------------------------------------
# Servers: each start_* writes its config into $WORK, launches the server in
# the background and sets SERVER_PID and SERVER_PORT.
#
# Every server runs under setsid, in a session and process group of its own:
# lighttpd's master stops its workers with kill(0, SIGTERM), which would
# otherwise hit this script and the shell that started it.  (A background
# child is never a group leader, so setsid execs without forking and $! is the
# server itself.)
# ----------------------------------------------------------------------------
SERVER_PID=""
SERVER_PORT=""

start_ringhttpd() {
  local log="$WORK/ringhttpd.$1.log" i
  local pin=(--no-pin)
  ((RING_PIN)) && pin=()
  setsid "$RING_BIN" -a 127.0.0.1 -p 0 -r "$ROOT" -w "$WORKERS" "${pin[@]}" 2>"$log" &
  SERVER_PID=$!
  # It binds port 0 and reports the port it got on stderr.
  for ((i = 0; i < 200; i++)); do
    SERVER_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
    [[ -n $SERVER_PORT ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  log "ringhttpd did not report its port; its stderr:"; tail -5 "$log" >&2
  return 1
}

start_nginx() {
  local dir="$WORK/nginx" conf
  mkdir -p "$dir/tmp"
  SERVER_PORT=$(free_port)
  conf="$dir/nginx.conf"
  # worker_connections must hold the 10,000 idle connections in one worker
  # (accepts are not spread evenly); backlog 4096 like the kernel's somaxconn
  # so the 2,000-connection burst is not throttled by nginx's default of 511.
  cat >"$conf" <<EOF
user root;
worker_processes $WORKERS;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 20000; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 75;
    types { text/html html; application/octet-stream bin; }
    default_type application/octet-stream;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$SERVER_PORT backlog=4096;
        root $ROOT;
        index index.html;
    }
}
EOF
  setsid nginx -e "$dir/error.log" -p "$dir" -c "$conf" 2>>"$dir/stderr.log" &
  SERVER_PID=$!
}

start_lighttpd() {
  local dir="$WORK/lighttpd" conf
  mkdir -p "$dir"
  SERVER_PORT=$(free_port)
  conf="$dir/lighttpd.conf"
  # max-connections is per worker process, like nginx's worker_connections;
  # lighttpd wants at most max-fds/2 of them.  Idle keep-alive timeout 75 s
  # (default 5 s) so the idle-memory test is not cut short.
  cat >"$conf" <<EOF
server.document-root = "$ROOT"
server.bind = "127.0.0.1"
server.port = $SERVER_PORT
server.max-worker = $WORKERS
server.network-backend = "sendfile"
server.max-keep-alive-requests = 100000
server.max-keep-alive-idle = 75
server.max-fds = 20000
server.max-connections = 10000
server.listen-backlog = 4096
server.errorlog = "$dir/error.log"
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html", ".bin" => "application/octet-stream" )
EOF
  setsid lighttpd -D -f "$conf" 2>>"$dir/stderr.log" &
  SERVER_PID=$!
}

start_h2o() {
  local dir="$WORK/h2o" conf
  mkdir -p "$dir"
  SERVER_PORT=$(free_port)
  conf="$dir/h2o.conf"
  # max-connections defaults to 1024, too few for the 2,000 and 10,000
  # connection tests; the idle timeout (http1-request-timeout) defaults to 10 s.
  # `user: root` because h2o started as root otherwise switches to nobody.
  cat >"$conf" <<EOF
user: root
num-threads: $WORKERS
max-connections: 20000
http1-request-timeout: 75
error-log: $dir/error.log
pid-file: $dir/h2o.pid
listen:
  host: 127.0.0.1
  port: $SERVER_PORT
hosts:
  default:
    paths:
      /:
        file.dir: $ROOT
EOF
  setsid h2o -c "$conf" 2>>"$dir/stderr.log" &
  SERVER_PID=$!
}

# Readiness is a bounded series of real HTTP requests, not a fixed sleep.
wait_ready() {
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$SERVER_PORT/index.html" && return 0
    sleep 0.05
  done
  return 1
}

# Every file must come back whole with 200: a server that serves the wrong
# thing would otherwise post meaningless numbers.  Also warms the page cache.
sanity_check() {
  local f want got
  for f in index.html:11 16k.bin:16384 1m.bin:1048576 100m.bin:104857600; do
    want="200 ${f#*:}"
    got=$(curl -s -o /dev/null -m 30 -w '%{http_code} %{size_download}' \
      "http://127.0.0.1:$SERVER_PORT/${f%%:*}" || true)
    if [[ $got != "$want" ]]; then
      note "$1: GET /${f%%:*} gave '$got', expected '$want'"
      return 1
    fi
  done
}

start_server() {
  local name=$1 round=$2
  SERVER_PID="" SERVER_PORT=""
  "start_$name" "$round" || return 1
  RUNNING_PIDS+=("$SERVER_PID")
  if ! wait_ready; then
    log "$name did not become ready on port $SERVER_PORT"
    local f
    for f in "$WORK/$name"/error.log "$WORK/$name"/stderr.log "$WORK/$name.$round.log"; do
      [[ -f $f ]] && tail -5 "$f" >&2
    done
    return 1
  fi
  log "$name ready: pid $SERVER_PID, port $SERVER_PORT"
}

# Stops one server tree: TERM to the main process (nginx, lighttpd stop their
# workers themselves), a bounded wait, then KILL for anything left of the
# tree.  Only our own PIDs are signalled.
stop_tree() {
  local pid=$1 i tree
  kill -0 "$pid" 2>/dev/null || return 0
  tree=$(python3 "$LIB/proc.py" tree "$pid" 2>/dev/null || echo "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  # shellcheck disable=SC2086  # $tree is a list of PIDs
  kill -KILL $tree 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  [[ -n $SERVER_PID ]] && stop_tree "$SERVER_PID"
  local keep=() p
  for p in "${RUNNING_PIDS[@]}"; do [[ $p == "$SERVER_PID" ]] || keep+=("$p"); done
  RUNNING_PIDS=("${keep[@]}")
  SERVER_PID=""
}

RUNNING_PIDS=()
WORK=""
cleanup() {
  local p
  for p in "${RUNNING_PIDS[@]}"; do stop_tree "$p"; done
  if [[ -n $WORK && -d $WORK ]]; then
    if ((KEEP_TMP)); then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  fi
}

# ----------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------

# RSS of the fresh server, then with IDLE_CONNS keep-alive connections that
# have each served one request and now sit idle.  The holder is a separate
# process so its sockets do not eat into the server's fd limit.
measure_idle() {
  local name=$1 out="$WORK/idle.$1.out" before after opened=NA failed=NA alive=NA i holder
  before=$(python3 "$LIB/proc.py" rss "$SERVER_PID")
  log "$name: opening $IDLE_CONNS idle keep-alive connections"
  : >"$out"  # exists before the holder starts, for the polling below
  python3 "$LIB/idle.py" "$SERVER_PORT" "$IDLE_CONNS" 3 >"$out" 2>>"$WORK/idle.$name.err" &
  holder=$!
  # Bounded: idle.py gives up opening after 120 s by itself.
  for ((i = 0; i < 1500; i++)); do
    grep -q '^READY' "$out" && break
    kill -0 "$holder" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q '^READY' "$out"; then
    sleep 1  # let the server finish any deferred work for the last ones
    after=$(python3 "$LIB/proc.py" rss "$SERVER_PID")
    read -r _ opened failed < <(grep '^READY' "$out")
  else
    after=NA
  fi
  wait "$holder" 2>/dev/null || true
  alive=$(sed -n 's/^ALIVE //p' "$out")
  : "${alive:=NA}"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$before" "$after" "$opened" "$failed" "$alive" >>"$WORK/mem.tsv"
  if [[ $failed != 0 || $alive != "$opened" ]]; then
    note "$name idle test: opened $opened, failed $failed, still open at measurement end $alive ($(head -1 "$WORK/idle.$name.err" 2>/dev/null))"
  fi
  log "$name: RSS $before -> $after bytes with $opened idle connections"
}

# One workload against the running server: CPU ticks of the server tree
# around the load, the load generator's own totals, one row in results.tsv.
run_workload() {
  local name=$1 wl=$2 round=$3 url="http://127.0.0.1:$SERVER_PORT"
  local raw="$WORK/raw/$name.$wl.$round.txt" kind=wrk cpu0 cpu1 ticks res
  local lua="$LIB/wrk_report.lua" d="${DURATION}s"
  # Hard cap so a hung server cannot stall the whole run.
  local cap=$((DURATION + 60))
  cpu0=$(python3 "$LIB/proc.py" cpu "$SERVER_PID")
  case $wl in
    ab) kind=ab cap=300
        timeout "$cap" ab -n "$AB_N" -c "$AB_C" -r -s 60 "$url/" >"$raw" 2>&1 || true ;;
    small) timeout "$cap" wrk -t1 -c100 -d"$d" -s "$lua" "$url/index.html" >"$raw" 2>&1 || true ;;
    16k) timeout "$cap" wrk -t1 -c100 -d"$d" -s "$lua" "$url/16k.bin" >"$raw" 2>&1 || true ;;
    1m) timeout "$cap" wrk -t1 -c16 -d"$d" -s "$lua" "$url/1m.bin" >"$raw" 2>&1 || true ;;
    c2000) timeout "$cap" wrk -t2 -c2000 -d"$d" -s "$lua" "$url/index.html" >"$raw" 2>&1 || true ;;
    100m) timeout "$cap" wrk -t1 -c1 -d"$d" -s "$lua" "$url/100m.bin" >"$raw" 2>&1 || true ;;
  esac
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    cpu1=$(python3 "$LIB/proc.py" cpu "$SERVER_PID")
    ticks=$((cpu1 - cpu0))
  else
    ticks=NA
    note "$name died during workload $wl (round $round)"
  fi
  if res=$(python3 "$LIB/parse.py" "$kind" "$raw"); then
    local req dur bytes err
    read -r req dur bytes err <<<"$res"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$wl" "$round" "$req" "$dur" "$bytes" "$err" "$ticks" >>"$WORK/results.tsv"
    log "$name $wl round $round: $req requests in ${dur}s, $err errors, $ticks ticks"
  else
    printf '%s\t%s\t%s\tNA\tNA\tNA\tNA\t%s\n' "$name" "$wl" "$round" "$ticks" >>"$WORK/results.tsv"
    note "$name workload $wl round $round produced no result: $(tail -1 "$raw" 2>/dev/null)"
  fi
}

# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------
main() {
  parse_args "$@"
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringhttpd-bench.XXXXXX")
  mkdir -p "$WORK/raw"
  : >"$WORK/notes.txt"
  trap cleanup EXIT
  trap 'exit 130' INT TERM

  raise_fd_limit
  ensure_tools
  build_ringhttpd
  ((${#SERVERS[@]})) || { log "FATAL: no server left to measure"; exit 1; }
  make_docroot
  collect_meta
  log "servers: ${SERVERS[*]}; workers $WORKERS; rounds $ROUNDS; work dir $WORK"

  local round i n=${#SERVERS[@]} name wl
  local -A dead=()
  for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the order each round so no server always runs first or last.
    for ((i = 0; i < n; i++)); do
      name=${SERVERS[$(((i + round - 1) % n))]}
      [[ -z ${dead[$name]:-} ]] || continue
      log "round $round/$ROUNDS: $name"
      if ! start_server "$name" "$round" || ! sanity_check "$name"; then
        note "$name could not be started or served wrong content in round $round: skipped from then on"
        dead[$name]=1
        stop_server
        continue
      fi
      if ((round == 1 && IDLE_CONNS > 0)); then measure_idle "$name"; fi
      for wl in "${WORKLOADS[@]}"; do
        run_workload "$name" "$wl" "$round"
        kill -0 "$SERVER_PID" 2>/dev/null || break
      done
      stop_server
    done
  done

  local md
  md=$(python3 "$LIB/report.py" "$WORK")
  mkdir -p "$REPO/bench-results"
  local out
  out="$REPO/bench-results/bench-$(date -u +%Y%m%d-%H%M%S).md"
  printf '%s\n' "$md" >"$out"
  printf '%s\n' "$md"
  log "report saved to ${out#"$REPO"/}"
}

main "$@"
