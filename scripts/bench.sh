#!/usr/bin/env bash
# Side-by-side benchmark of ringhttpd against nginx, lighttpd and h2o on this
# machine, over loopback.
#
#   scripts/bench.sh [--workers N] [--rounds R] [--quick] [--only a,b]
#                    [--workloads a,b] [--idle-conns N] [--no-install]
#                    [--env FILE] [--keep-tmp] [--ringhttpd-bin PATH]
#                    [--baseline-bin PATH]
#                    [--server-cpus LIST] [--client-cpus LIST]
#                    [--wrk-threads N] [--connections N]
#
# Every server gets the same document root, the same number of workers,
# keep-alive and sendfile on and access logs off.  Each round starts every
# server in turn (order rotated per round), runs all workloads against it and
# stops it, so only one server is ever alive while measured.  On a machine
# with many cores, --server-cpus and --client-cpus keep servers and load
# generators on separate CPU sets (taskset), and --wrk-threads/--connections
# scale the load.  The https-* workloads (--workloads https) run the same
# loads over TLS, on a second port of every server with one certificate made
# for the run.  The Markdown
# report goes to stdout and to bench-results/bench-<date>.md; progress goes
# to stderr.  Run `scripts/bench.sh --help` for the details.

set -euo pipefail
# The peers live in sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIB="$REPO/scripts/bench_lib"
# shellcheck source=scripts/bench_lib/servers.sh
source "$LIB/servers.sh"
ALL_SERVERS=(ringhttpd nginx lighttpd h2o)
PLAIN_WORKLOADS=(ab close small 16k 1m c2000 100m)
HTTPS_WORKLOADS=(https-handshake https-resume https-small https-16k https-1m)
ALL_WORKLOADS=("${PLAIN_WORKLOADS[@]}" "${HTTPS_WORKLOADS[@]}")

# The wrk workloads: URL path, default threads (-t) and connections (-c).
# --wrk-threads replaces every -t; --connections replaces the -c of the
# workloads in SCALABLE (the others are defined by their connection count).
# Each https-* wrk workload is its plain twin over TLS.
declare -A WL_PATH=([close]=/index.html [small]=/index.html [16k]=/16k.bin
  [1m]=/1m.bin [c2000]=/index.html [100m]=/100m.bin [https-resume]=/index.html
  [https-small]=/index.html [https-16k]=/16k.bin [https-1m]=/1m.bin)
declare -A WL_THREADS=([close]=2 [small]=1 [16k]=1 [1m]=1 [c2000]=2 [100m]=1
  [https-resume]=2 [https-small]=1 [https-16k]=1 [https-1m]=1)
declare -A WL_CONNS=([close]=100 [small]=100 [16k]=100 [1m]=16 [c2000]=2000 [100m]=1
  [https-resume]=100 [https-small]=100 [https-16k]=100 [https-1m]=16)
SCALABLE=(close small 16k https-resume https-small https-16k)
# The -t and -c each wrk workload runs with (set by parse_args).
declare -A WRK_T=() WRK_C=()

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
# ringhttpd runs with its default placement (auto: pinned only when the workers are fewer
# than the CPUs it may use) unless --pin or --no-pin forces one, as a user gets it.
RING_PLACEMENT=()
RING_PREBUILT=""
BASE_PREBUILT=""
WORKLOAD_LIST=""
TOOLS_ENV=""
SERVER_CPUS=""
CLIENT_CPUS=""
WRK_THREADS=""
CONNECTIONS=""
# Prefixes for every server and every load generator command: empty, or
# `taskset -c LIST`.  Forks and threads inherit the CPU set.
SERVER_WRAP=()
CLIENT_WRAP=()
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
  --workloads LIST comma-separated workloads (listed below) by name, or the
                   groups `plain` (1-7), `https` (8-12) and `all`
                   (default: plain)
  --idle-conns N   idle keep-alive connections for the memory test
                   (default 10000, 1000 with --quick, 0 to skip)
  --no-install     never install anything (no apt-get): use the tools found on
                   PATH, fail if a needed load generator is missing, skip
                   missing peers
  --env FILE       source FILE first, e.g. the env.sh of a prepared tool
                   bundle (.devbench/env.sh) that puts its binaries on PATH and
                   sets LD_LIBRARY_PATH; usually with --no-install
  --keep-tmp       keep the work dir (configs, raw tool output, server logs)
  --ringhttpd-bin PATH
                   benchmark this ringhttpd binary instead of building one
  --baseline-bin PATH
                   also benchmark this ringhttpd binary (say, a build of an
                   earlier commit) as the server `baseline`, with the same
                   flags and in the same rotation: a before/after comparison
                   interleaved with the peers, its ratios against ringhttpd
                   in each table, and a last "regression line" naming every
                   workload this build lost beyond the rounds' spread
  --pin, --no-pin  force ringhttpd's worker placement (default: its own `auto`,
                   which pins only when the workers are fewer than the CPUs it
                   may use; with --server-cpus, those CPUs are the set)

Many cores:
  --server-cpus LIST
                   run every server (and all its workers) under
                   `taskset -c LIST`, e.g. 0-7 (default: not confined)
  --client-cpus LIST
                   run every load generator (wrk, ab, the idle-connection
                   holder) under `taskset -c LIST`, e.g. 8-15 (default: not
                   confined); give both sets, disjoint, to keep servers and
                   clients off each other's cores
  --wrk-threads N  wrk threads (-t) for every wrk workload, capped at its
                   connection count (default: per workload, as listed below)
  --connections N  connections (-c) of the close, small and 16k workloads
                   and their https twins (default 100); wrk opens connections/threads per thread,
                   so N is rounded down to a multiple of the threads
  -h, --help       this text

Workloads (each against every server, R rounds):
  1. ab     ab  -n 50000 -c 100 -r -s 60 /   new connection per request,
                                             one client thread
  2. close  wrk -t2 -c100 -d10s -H 'Connection: close' /index.html
                                             new connection per request,
                                             multi-threaded client
  3. small  wrk -t1 -c100  -d10s /index.html keep-alive, 11-byte file
  4. 16k    wrk -t1 -c100  -d10s /16k.bin
  5. 1m     wrk -t1 -c16   -d10s /1m.bin     throughput
  6. c2000  wrk -t2 -c2000 -d10s /index.html many keep-alive connections
  7. 100m   wrk -t1 -c1    -d10s /100m.bin   one connection streaming
plus RSS per idle keep-alive connection.

HTTPS workloads (only with --workloads https, all, or by name), against a
second, TLS port of every server:
  8. https-handshake  ab -t10 -c100 -f TLS1.3 /index.html
                      new connection per request, each a full TLS 1.3
                      handshake (ab never resumes a session); ab stops
                      early at 50,000 requests
  9. https-resume     wrk -t2 -c100 -d10s -H 'Connection: close' /index.html
                      new connection per request, each offering the TLS
                      session of the one before for resumption (wrk keeps
                      it); a server that sends no new ticket on a resumed
                      connection gets full and resumed handshakes in turn
 10. https-small      wrk -t1 -c100 -d10s /index.html  keep-alive
 11. https-16k        wrk -t1 -c100 -d10s /16k.bin
 12. https-1m         wrk -t1 -c16  -d10s /1m.bin
Every server gets the same certificate, made with openssl for the run
(ECDSA P-256, self-signed, for localhost and 127.0.0.1), TLS 1.2 and 1.3,
Mozilla's intermediate ciphers and session tickets on.  nginx also gets
`ssl_conf_command Options KTLS` (sendfile through kernel TLS) when nginx -t
accepts it and the kernel offers the `tls` ULP; the report says which.
ringhttpd's https rows need a build that takes --tls-port (else skipped).

Example, 16 cores: servers on 0-7, load generators on 8-15:
  scripts/bench.sh --workers 8 --server-cpus 0-7 --client-cpus 8-15 \
                   --wrk-threads 8 --connections 400
EOF
}

parse_args() {
  while (($#)); do
    case $1 in
      --workers) WORKERS=${2:?--workers needs a number}; shift ;;
      --rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
      --quick) QUICK=1 ;;
      --only) ONLY=${2:?--only needs a list}; shift ;;
      --workloads) WORKLOAD_LIST=${2:?--workloads needs a list}; shift ;;
      --idle-conns) IDLE_CONNS=${2:?--idle-conns needs a number}; shift ;;
      --no-install) INSTALL=0 ;;
      --env) TOOLS_ENV=${2:?--env needs a file}; shift ;;
      --keep-tmp) KEEP_TMP=1 ;;
      --ringhttpd-bin) RING_PREBUILT=${2:?--ringhttpd-bin needs a path}; shift ;;
      --baseline-bin) BASE_PREBUILT=${2:?--baseline-bin needs a path}; shift ;;
      --pin | --no-pin) RING_PLACEMENT=("$1") ;;
      --server-cpus) SERVER_CPUS=${2:?--server-cpus needs a CPU list}; shift ;;
      --client-cpus) CLIENT_CPUS=${2:?--client-cpus needs a CPU list}; shift ;;
      --wrk-threads) WRK_THREADS=${2:?--wrk-threads needs a number}; shift ;;
      --connections) CONNECTIONS=${2:?--connections needs a number}; shift ;;
      -h | --help) usage; exit 0 ;;
      *) echo "bench.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
  done
  [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: bad --workers" >&2; exit 2; }
  [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: bad --rounds" >&2; exit 2; }
  [[ -z $WRK_THREADS || $WRK_THREADS =~ ^[1-9][0-9]*$ ]] ||
    { echo "bench.sh: bad --wrk-threads" >&2; exit 2; }
  [[ -z $CONNECTIONS || $CONNECTIONS =~ ^[1-9][0-9]*$ ]] ||
    { echo "bench.sh: bad --connections" >&2; exit 2; }
  local list
  for list in "$SERVER_CPUS" "$CLIENT_CPUS"; do
    [[ -z $list || $list =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] ||
      { echo "bench.sh: bad CPU list '$list' (want e.g. 0-3 or 0,2,4-7)" >&2; exit 2; }
  done
  if [[ -n $TOOLS_ENV && ! -r $TOOLS_ENV ]]; then
    echo "bench.sh: --env $TOOLS_ENV is not a readable file" >&2; exit 2
  fi

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
  if [[ -n $BASE_PREBUILT ]]; then SERVERS+=(baseline); fi

  local w wanted_wl expanded=""
  WORKLOADS=("${PLAIN_WORKLOADS[@]}")
  if [[ -n $WORKLOAD_LIST ]]; then
    IFS=, read -ra wanted_wl <<<"$WORKLOAD_LIST"
    for w in "${wanted_wl[@]}"; do
      case $w in
        plain) expanded+=",${PLAIN_WORKLOADS[*]}" ;;
        https) expanded+=",${HTTPS_WORKLOADS[*]}" ;;
        all) expanded+=",${ALL_WORKLOADS[*]}" ;;
        *)
          [[ " ${ALL_WORKLOADS[*]} " == *" $w "* ]] ||
            { echo "bench.sh: unknown workload '$w' in --workloads (see --help)" >&2; exit 2; }
          expanded+=",$w" ;;
      esac
    done
    expanded="${expanded// /,},"
    # Always in the published order, whatever order the list gives.
    WORKLOADS=()
    for w in "${ALL_WORKLOADS[@]}"; do
      [[ $expanded == *",$w,"* ]] && WORKLOADS+=("$w")
    done
  fi

  # wrk's -t and -c per workload.  wrk gives each thread connections/threads
  # connections and refuses fewer connections than threads, so -t is capped
  # at -c and -c rounded down to a multiple of -t: the command shown in the
  # report is then exactly what ran.
  local t c
  for w in "${!WL_PATH[@]}"; do
    t=${WRK_THREADS:-${WL_THREADS[$w]}}
    c=${WL_CONNS[$w]}
    [[ -n $CONNECTIONS && " ${SCALABLE[*]} " == *" $w "* ]] && c=$CONNECTIONS
    if ((t > c)); then t=$c; fi
    WRK_T[$w]=$t
    WRK_C[$w]=$((c - c % t))
  done

  if [[ -n $SERVER_CPUS ]]; then SERVER_WRAP=(taskset -c "$SERVER_CPUS"); fi
  if [[ -n $CLIENT_CPUS ]]; then CLIENT_WRAP=(taskset -c "$CLIENT_CPUS"); fi
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

# The CPUs of a taskset list (0-3,6 -> 0 1 2 3 6), one per line, sorted.
cpu_list_expand() {
  local part parts i
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then
      for ((i = ${part%-*}; i <= ${part#*-}; i++)); do echo "$i"; done
    else
      echo "$part"
    fi
  done | sort -nu
}

# Connections the kernel has accepted so far (Tcp PassiveOpens, counted over
# the whole network namespace); empty if /proc/net/snmp cannot be read.
tcp_passive_opens() {
  awk '$1 == "Tcp:" {
         if (!col) { for (i = 2; i <= NF; i++) if ($i == "PassiveOpens") col = i }
         else { print $col; exit }
       }' /proc/net/snmp 2>/dev/null || true
}

# 2000 -> 2,000, for the report's headings.
commas() {
  local n=$1 out=""
  while ((${#n} > 3)); do
    out=",${n: -3}$out"
    n=${n:0:${#n}-3}
  done
  printf '%s%s\n' "$n" "$out"
}

# join_by SEP WORD... -> the words joined by SEP.
join_by() {
  local sep=$1 out=""
  shift
  (($#)) || return 0
  out=$1
  shift
  for word; do out+="$sep$word"; done
  printf '%s\n' "$out"
}

wants_workload() { [[ " ${WORKLOADS[*]} " == *" $1 "* ]]; }

# The workloads ab runs; all others run wrk.
is_ab() { [[ $1 == ab || $1 == https-handshake ]]; }
is_https() { [[ $1 == https-* ]]; }

# True if some selected workload runs wrk, ab, or goes over TLS.
wants_wrk() {
  local w
  for w in "${WORKLOADS[@]}"; do is_ab "$w" || return 0; done
  return 1
}
wants_ab() {
  local w
  for w in "${WORKLOADS[@]}"; do is_ab "$w" && return 0; done
  return 1
}
wants_https() {
  local w
  for w in "${WORKLOADS[@]}"; do is_https "$w" && return 0; done
  return 1
}

# ----------------------------------------------------------------------------
# Setup steps
# ----------------------------------------------------------------------------

# A prepared tool bundle (--env): its env.sh puts the bundle's bin directory
# on PATH and its libraries on LD_LIBRARY_PATH; both are exported, so every
# server and load generator started below inherits them.
source_tools_env() {
  [[ -n $TOOLS_ENV ]] || return 0
  log "sourcing $TOOLS_ENV"
  set +u  # env scripts often extend variables that may be unset
  # shellcheck disable=SC1090  # the file is given at run time
  . "$TOOLS_ENV"
  set -u
}

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

# Runs the version command of a tool, which any working build answers;
# prints what it said.
tool_version() {
  case $1 in
    ab) ab -V ;;
    curl) curl -V ;;
    openssl) openssl version ;;
    h2o | python3 | timeout) "$1" --version ;;
    setsid | taskset) "$1" -V ;;
    *) "$1" -v ;;
  esac 2>&1 </dev/null
}

# A tool found on PATH may still fail to start (a bundle whose libraries are
# not on LD_LIBRARY_PATH); finding that out now beats an empty result later.
tool_runs() {
  local out rc=0
  out=$(tool_version "$1") || rc=$?
  ((rc != 126 && rc != 127)) && [[ $out != *"error while loading shared libraries"* ]]
}

ensure_tools() {
  # command -> Debian package.  nginx-light is gone from newer Debian
  # releases; the retry below falls back to plain nginx.  With --no-install
  # nothing is installed and PATH alone decides (apt is never assumed).
  local -A pkg_of=([ab]=apache2-utils [wrk]=wrk [curl]=curl [taskset]=util-linux
    [openssl]=openssl [nginx]=nginx-light [lighttpd]=lighttpd [h2o]=h2o)
  local required=(curl python3 setsid timeout) wanted=() missing=() cmd s
  if wants_ab; then required+=(ab); fi
  if wants_wrk; then required+=(wrk); fi
  if wants_https; then required+=(openssl); fi
  if [[ -n $SERVER_CPUS$CLIENT_CPUS ]]; then required+=(taskset); fi
  wanted=("${required[@]}")
  for s in "${SERVERS[@]}"; do [[ $s == ringhttpd || $s == baseline ]] || wanted+=("$s"); done
  for cmd in "${wanted[@]}"; do
    command -v "$cmd" >/dev/null || [[ -z ${pkg_of[$cmd]:-} ]] || missing+=("${pkg_of[$cmd]}")
  done
  if ((INSTALL && ${#missing[@]})) && ! apt_install "${missing[@]}"; then
    for cmd in "${wanted[@]}"; do
      command -v "$cmd" >/dev/null && continue
      [[ -n ${pkg_of[$cmd]:-} ]] || continue
      apt_install "${pkg_of[$cmd]}" || { [[ $cmd == nginx ]] && apt_install nginx; } || true
    done
  fi

  local why="could not be installed"
  ((INSTALL)) || why="is not on PATH (--no-install)"
  for cmd in "${required[@]}"; do
    if ! command -v "$cmd" >/dev/null; then
      log "FATAL: $cmd is required and $why"; exit 1
    fi
    tool_runs "$cmd" ||
      { log "FATAL: $(command -v "$cmd") does not run: $(tool_version "$cmd" | head -1)"; exit 1; }
  done
  local keep=()
  for s in "${SERVERS[@]}"; do
    if [[ $s == ringhttpd || $s == baseline ]]; then
      keep+=("$s")
    elif ! command -v "$s" >/dev/null; then
      note "$s is not installed and $why: skipped"
    elif ! tool_runs "$s"; then
      note "$s ($(command -v "$s")) does not run: $(tool_version "$s" | head -1); skipped"
    else
      keep+=("$s")
    fi
  done
  SERVERS=("${keep[@]}")
}

# The CPU sets must exist and be allowed to this script; taskset says so.
check_cpu_sets() {
  local list
  for list in "$SERVER_CPUS" "$CLIENT_CPUS"; do
    [[ -n $list ]] || continue
    taskset -c "$list" true 2>/dev/null ||
      { log "FATAL: taskset -c $list fails: CPUs missing or not allowed here ($(taskset -pc $$ 2>&1))"; exit 1; }
  done
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

# The --baseline-bin binary, copied like ringhttpd's.
prepare_baseline() {
  [[ -n $BASE_PREBUILT ]] || return 0
  [[ -x $BASE_PREBUILT ]] || { log "FATAL: --baseline-bin $BASE_PREBUILT is not executable"; exit 1; }
  BASE_BIN="$WORK/baseline"
  cp "$BASE_PREBUILT" "$BASE_BIN"
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

# The one certificate every server presents: ECDSA P-256, self-signed, valid
# for localhost and 127.0.0.1, made fresh for the run.
make_tls_cert() {
  wants_https || return 0
  mkdir -p "$WORK/tls"
  TLS_CERT="$WORK/tls/cert.pem" TLS_KEY="$WORK/tls/key.pem"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes \
    -keyout "$TLS_KEY" -out "$TLS_CERT" -days 2 -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' >"$WORK/tls/openssl.log" 2>&1 ||
    { log "FATAL: openssl could not make the certificate:"; tail -3 "$WORK/tls/openssl.log" >&2; exit 1; }
  chmod 644 "$TLS_CERT"
  CURL_CA=(--cacert "$TLS_CERT")
}

# Which servers take part in the https workloads: ringhttpd builds that take
# --tls-port, and peers whose HTTPS configuration passes their own test mode
# (lighttpd needs mod_openssl, a package of its own on Debian).  The others
# are skipped from those workloads only.
declare -A HAS_TLS=()
TLS_CERT="" TLS_KEY=""
CURL_CA=()  # curl's option to trust the certificate
check_tls_support() {
  wants_https || return 0
  local s dir bin
  for s in "${SERVERS[@]}"; do
    HAS_TLS[$s]=0
    dir="$WORK/tlscheck/$s"
    mkdir -p "$dir"
    case $s in
      ringhttpd | baseline)
        bin=$RING_BIN
        [[ $s == baseline ]] && bin=$BASE_BIN
        if "$bin" --help 2>&1 | grep -q -- '--tls-port'; then
          HAS_TLS[$s]=1
        else
          note "$s does not accept --tls-port (a build without HTTPS): its https rows are skipped"
        fi
        continue ;;
      nginx)
        write_nginx_conf "$dir" "$(free_port)" "$WORKERS" "$ROOT" "" "" "$(free_port)" "$TLS_CERT" "$TLS_KEY"
        nginx -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/test.log" 2>&1 && HAS_TLS[$s]=1 ;;
      lighttpd)
        write_lighttpd_conf "$dir" "$(free_port)" "$WORKERS" "$ROOT" "$(free_port)" "$TLS_CERT" "$TLS_KEY"
        if ! lighttpd -tt -f "$dir/lighttpd.conf" >"$dir/test.log" 2>&1; then
          apt_install lighttpd-mod-openssl || true
        fi
        lighttpd -tt -f "$dir/lighttpd.conf" >"$dir/test.log" 2>&1 && HAS_TLS[$s]=1 ;;
      h2o)
        write_h2o_conf "$dir" "$(free_port)" "$WORKERS" "$ROOT" "$(free_port)" "$TLS_CERT" "$TLS_KEY"
        h2o -t -c "$dir/h2o.conf" >"$dir/test.log" 2>&1 && HAS_TLS[$s]=1 ;;
    esac
    ((HAS_TLS[$s])) ||
      note "$s refuses its HTTPS configuration, so its https rows are skipped: $(grep -v '^\s*$' "$dir/test.log" | tail -1)"
  done
  detect_nginx_ktls
}

# True if the kernel can do TLS itself: the `tls` ULP is listed, or setting
# it on a connected socket works (which loads the module if there is one).
kernel_tls_ulp() {
  grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null && return 0
  python3 -c '
import socket, sys
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
try:
    c.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_ULP", 31), b"tls")
except OSError as e:
    sys.exit(e.strerror)
' 2>/dev/null
}

# nginx sends files through kernel TLS (SSL_sendfile) when OpenSSL is told
# to (ssl_conf_command Options KTLS, nginx >= 1.21.4 with OpenSSL 3) and the
# kernel has the tls ULP; otherwise it encrypts in user space and cannot use
# sendfile over TLS.  Whether it really did shows in /proc/net/tls_stat.
NGINX_KTLS=0
detect_nginx_ktls() {
  [[ ${HAS_TLS[nginx]:-0} == 1 ]] || return 0
  local dir="$WORK/tlscheck/nginx-ktls" why="" short="" ulps
  mkdir -p "$dir"
  write_nginx_conf "$dir" "$(free_port)" "$WORKERS" "$ROOT" "" "" "$(free_port)" "$TLS_CERT" "$TLS_KEY" 1
  ulps=$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null || echo unreadable)
  if ! nginx -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/test.log" 2>&1; then
    why="nginx -t refuses \`ssl_conf_command Options KTLS\` ($(grep -m1 emerg "$dir/test.log"))"
    short="off (nginx or its OpenSSL lacks it)"
  elif ! kernel_tls_ulp; then
    why="nginx and OpenSSL accept \`ssl_conf_command Options KTLS\`, but the kernel has no tls ULP (tcp_available_ulp: ${ulps:-none})"
    short="off (no tls ULP in the kernel)"
  fi
  if [[ -z $why ]]; then
    NGINX_KTLS=1
    meta ktls.nginx "on (\`ssl_conf_command Options KTLS\`: sendfile through kernel TLS)"
    note "nginx ran with \`ssl_conf_command Options KTLS\`: nginx -t accepts it and the kernel has the tls ULP"
  else
    meta ktls.nginx "$short"
    note "nginx ran with TLS in user space (no kTLS, no sendfile over TLS): $why"
  fi
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
  if ((${#RING_PLACEMENT[@]})); then
    note "ringhttpd ran with ${RING_PLACEMENT[0]}${SERVER_CPUS:+ inside --server-cpus $SERVER_CPUS}"
  else
    note "ringhttpd ran with its default worker placement (auto)${SERVER_CPUS:+ inside --server-cpus $SERVER_CPUS}"
  fi
  if awk -v l="${load%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    note "the machine was not idle at the start (load average $load): figures may be skewed"
  fi
  meta servers "$(IFS=,; echo "${SERVERS[*]}")"
  meta workloads "$(IFS=,; echo "${WORKLOADS[*]}")"
  local tools=() paths=() cmd
  # (`wrk -v` exits 1, hence the `|| true`: set -e would stop at it.)
  if wants_wrk; then tools+=("$({ tool_version wrk || true; } | head -1 | awk '{print $1, $2}')"); fi
  if wants_ab; then tools+=("ab $(tool_version ab | sed -n 's/.*Version \([0-9.]*\).*/\1/p')"); fi
  if wants_https; then tools+=("$(tool_version openssl | awk '{print $1, $2}')"); fi
  meta tools "$(join_by ', ' "${tools[@]}")"
  # Where each tool came from: the system, or a bundle put on PATH (--env).
  for cmd in wrk ab "${SERVERS[@]}"; do
    case $cmd in
      ringhttpd | baseline) continue ;;
      wrk) wants_wrk || continue ;;
      ab) wants_ab || continue ;;
    esac
    paths+=("$cmd \`$(command -v "$cmd")\`")
  done
  meta paths "$(join_by ', ' "${paths[@]}")${TOOLS_ENV:+ (environment from \`$TOOLS_ENV\`)}"

  # CPU sets, and the concurrency every workload ran with.
  meta server_cpus "$SERVER_CPUS"
  meta client_cpus "$CLIENT_CPUS"
  local n_server n_client overlap load=() w
  if [[ -n $SERVER_CPUS ]]; then
    n_server=$(cpu_list_expand "$SERVER_CPUS" | wc -l)
    meta server_cpus_n "$n_server"
    ((n_server >= WORKERS)) ||
      note "--server-cpus $SERVER_CPUS holds $n_server CPU(s) for $WORKERS workers per server"
  fi
  if [[ -n $CLIENT_CPUS ]]; then
    n_client=$(cpu_list_expand "$CLIENT_CPUS" | wc -l)
    meta client_cpus_n "$n_client"
    if wants_wrk && [[ -n $WRK_THREADS ]] && ((WRK_THREADS > n_client)); then
      note "--wrk-threads $WRK_THREADS exceeds the $n_client CPUs of --client-cpus $CLIENT_CPUS"
    fi
  fi
  if [[ -n $SERVER_CPUS && -n $CLIENT_CPUS ]]; then
    overlap=$(comm -12 <(cpu_list_expand "$SERVER_CPUS" | sort) <(cpu_list_expand "$CLIENT_CPUS" | sort) | sort -n | paste -sd, -)
    [[ -z $overlap ]] || note "server and load-generator CPU sets overlap on CPUs $overlap"
  elif [[ -n $SERVER_CPUS$CLIENT_CPUS ]]; then
    note "only one side is confined (${SERVER_CPUS:+--server-cpus}${CLIENT_CPUS:+--client-cpus}): the other runs on any CPU, these included"
  fi
  for w in "${WORKLOADS[@]}"; do
    if is_ab "$w"; then load+=("$w -c$AB_C"); else load+=("$w -t${WRK_T[$w]} -c${WRK_C[$w]}"); fi
  done
  meta load "$(join_by ', ' "${load[@]}")"
  local asked
  for w in "${WORKLOADS[@]}"; do
    ! is_ab "$w" || continue
    asked=${WL_CONNS[$w]}
    if [[ -n $CONNECTIONS && " ${SCALABLE[*]} " == *" $w "* ]]; then asked=$CONNECTIONS; fi
    if ((WRK_C[$w] != asked)); then
      note "wrk opens connections ÷ threads per thread: $w ran -c${WRK_C[$w]} instead of $asked with ${WRK_T[$w]} threads"
    fi
  done
  if { wants_workload ab || wants_workload close || wants_workload https-handshake ||
    wants_workload https-resume; } &&
    [[ $(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo 2) == 0 ]]; then
    note "net.ipv4.tcp_tw_reuse is 0: the new-connection workloads may run out of local ports (connect errors)"
  fi

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
      baseline)
        v=$("$BASE_BIN" --version 2>/dev/null | head -1 || true)
        v="baseline: ${v:-ringhttpd} (prebuilt $BASE_PREBUILT)" ;;
      nginx) v=$(nginx -v 2>&1 | sed 's/.*nginx\//nginx /') ;;
      lighttpd) v=$(lighttpd -v 2>&1 | head -1 | awk '{print $1}' | tr / ' ') ;;
      h2o) v=$(h2o --version 2>&1 | head -1 | sed 's/ version / /') ;;
    esac
    meta "version.$s" "$v"
  done

  # Titles and exact commands of the workloads, for the report headings.
  # (Client commands run under `taskset -c CLIENT_CPUS` when given.)
  local u="http://127.0.0.1:PORT"
  meta title.ab "1. New connection per request (ab, $(commas "$AB_N") requests, ${AB_C} concurrent, one client thread)"
  meta cmd.ab "ab -n $AB_N -c $AB_C -r -s 60 $u/"
  meta title.close "2. New connection per request (wrk, Connection: close), ${WRK_C[close]} connections, ${WRK_T[close]} client threads"
  meta cmd.close "wrk -t${WRK_T[close]} -c${WRK_C[close]} -d${DURATION}s -H 'Connection: close' $u/index.html"
  meta title.small "3. Keep-alive, small file (11 bytes), ${WRK_C[small]} connections"
  meta title.16k "4. Keep-alive, 16 KiB file, ${WRK_C[16k]} connections"
  meta title.1m "5. Throughput, 1 MiB file, ${WRK_C[1m]} connections"
  meta title.c2000 "6. $(commas "${WRK_C[c2000]}") concurrent keep-alive connections, small file"
  meta title.100m "7. One connection streaming the 100 MiB file (see MB/s)"
  for w in small 16k 1m c2000 100m; do
    meta "cmd.$w" "wrk -t${WRK_T[$w]} -c${WRK_C[$w]} -d${DURATION}s $u${WL_PATH[$w]}"
  done

  # The https workloads, against each server's TLS port.
  u="https://127.0.0.1:TLSPORT"
  meta title.https-handshake "8. HTTPS, new connection per request, each a full TLS 1.3 handshake (ab, ${DURATION} s, ${AB_C} concurrent, one client thread)"
  meta cmd.https-handshake "ab -t $DURATION -c $AB_C -r -s 60 -f TLS1.3 $u/index.html"
  meta title.https-resume "9. HTTPS, new connection per request (wrk, Connection: close), each offering the session of the one before (see HTTPS setup), ${WRK_C[https-resume]} connections, ${WRK_T[https-resume]} client threads"
  meta cmd.https-resume "wrk -t${WRK_T[https-resume]} -c${WRK_C[https-resume]} -d${DURATION}s -H 'Connection: close' $u/index.html"
  meta title.https-small "10. HTTPS keep-alive, small file (11 bytes), ${WRK_C[https-small]} connections"
  meta title.https-16k "11. HTTPS keep-alive, 16 KiB file, ${WRK_C[https-16k]} connections"
  meta title.https-1m "12. HTTPS throughput, 1 MiB file, ${WRK_C[https-1m]} connections"
  for w in https-small https-16k https-1m; do
    meta "cmd.$w" "wrk -t${WRK_T[$w]} -c${WRK_C[$w]} -d${DURATION}s $u${WL_PATH[$w]}"
  done
  if wants_https; then
    meta tls.cert "ECDSA P-256, self-signed (subjectAltName DNS:localhost, IP:127.0.0.1), the same for every server"
    meta tls.config "TLS 1.2 and 1.3, Mozilla intermediate ciphers (TLS 1.2), groups ${TLS_GROUPS//:/, }, session tickets on"
    local s tls_servers=()
    for s in "${SERVERS[@]}"; do ((${HAS_TLS[$s]:-0})) && tls_servers+=("$s"); done
    meta tls.servers "$(IFS=,; echo "${tls_servers[*]}")"
  fi
}

# ----------------------------------------------------------------------------
# Servers: each start_* writes its config into $WORK, launches the server in
# the background and sets SERVER_PID and SERVER_PORT.
#
# Every server runs under setsid, in a session and process group of its own:
# lighttpd's master stops its workers with kill(0, SIGTERM), which would
# otherwise hit this script and the shell that started it.  (A background
# child is never a group leader, so setsid execs without forking and $! is the
# server itself.)  With --server-cpus, `taskset -c LIST` comes first and execs
# too, so $! is still the server, and its forks and threads inherit the set.
# ----------------------------------------------------------------------------
SERVER_PID=""
SERVER_PORT=""
# The HTTPS port, for a server that serves the https workloads; else empty.
SERVER_TLS_PORT=""

# wants_tls NAME: true if NAME gets an HTTPS port this run.
wants_tls() { wants_https && ((${HAS_TLS[$1]:-0})); }

start_ringhttpd() { start_ring_binary ringhttpd "$RING_BIN" "$1"; }
start_baseline() { start_ring_binary baseline "$BASE_BIN" "$1"; }

# start_ring_binary NAME BINARY ROUND
# With HTTPS it also binds --tls-port 0 and reports both:
# `listening on 127.0.0.1:P and https://127.0.0.1:T (workers: ...`.
# Kernel TLS is left at ringhttpd's default (--ktls auto), as a user gets it.
start_ring_binary() {
  local name=$1 bin=$2 log="$WORK/$1.$3.log" i tls=() tls_port=""
  if wants_tls "$name"; then
    tls_port=0
    tls=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY" --tls-port "$tls_port")
  fi
  "${SERVER_WRAP[@]}" setsid "$bin" -a 127.0.0.1 -p 0 -r "$ROOT" -w "$WORKERS" "${RING_PLACEMENT[@]}" "${tls[@]}" 2>"$log" &
  SERVER_PID=$!
  # It binds port 0 and reports the port(s) it got on stderr.
  for ((i = 0; i < 200; i++)); do
    SERVER_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
    if [[ -n $SERVER_PORT && -n $tls_port ]]; then
      SERVER_TLS_PORT=$(sed -n 's/.*listening on .*https:\/\/127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -1)
      if [[ -z $SERVER_TLS_PORT ]]; then
        log "$name did not report an https:// address on its start-up line; its stderr:"; tail -5 "$log" >&2
        return 1
      fi
    fi
    [[ -n $SERVER_PORT ]] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  log "$name did not report its port; its stderr:"; tail -5 "$log" >&2
  return 1
}

start_nginx() {
  local dir="$WORK/nginx"
  mkdir -p "$dir"
  SERVER_PORT=$(free_port)
  if wants_tls nginx; then
    SERVER_TLS_PORT=$(free_port)
    write_nginx_conf "$dir" "$SERVER_PORT" "$WORKERS" "$ROOT" "" "" \
      "$SERVER_TLS_PORT" "$TLS_CERT" "$TLS_KEY" "$NGINX_KTLS"
  else
    write_nginx_conf "$dir" "$SERVER_PORT" "$WORKERS" "$ROOT"
  fi
  local conf="$dir/nginx.conf"
  "${SERVER_WRAP[@]}" setsid nginx -e "$dir/error.log" -p "$dir" -c "$conf" 2>>"$dir/stderr.log" &
  SERVER_PID=$!
}

start_lighttpd() {
  local dir="$WORK/lighttpd"
  mkdir -p "$dir"
  SERVER_PORT=$(free_port)
  if wants_tls lighttpd; then SERVER_TLS_PORT=$(free_port); fi
  write_lighttpd_conf "$dir" "$SERVER_PORT" "$WORKERS" "$ROOT" \
    ${SERVER_TLS_PORT:+"$SERVER_TLS_PORT" "$TLS_CERT" "$TLS_KEY"}
  local conf="$dir/lighttpd.conf"
  "${SERVER_WRAP[@]}" setsid lighttpd -D -f "$conf" 2>>"$dir/stderr.log" &
  SERVER_PID=$!
}

start_h2o() {
  local dir="$WORK/h2o"
  mkdir -p "$dir"
  SERVER_PORT=$(free_port)
  if wants_tls h2o; then SERVER_TLS_PORT=$(free_port); fi
  write_h2o_conf "$dir" "$SERVER_PORT" "$WORKERS" "$ROOT" \
    ${SERVER_TLS_PORT:+"$SERVER_TLS_PORT" "$TLS_CERT" "$TLS_KEY"}
  local conf="$dir/h2o.conf"
  "${SERVER_WRAP[@]}" setsid h2o -c "$conf" 2>>"$dir/stderr.log" &
  SERVER_PID=$!
}

# Readiness is a bounded series of real HTTP requests, not a fixed sleep;
# over HTTPS too when the server has a TLS port (curl checks the certificate).
wait_ready() {
  local i url
  for url in "http://127.0.0.1:$SERVER_PORT/index.html" \
    ${SERVER_TLS_PORT:+"https://127.0.0.1:$SERVER_TLS_PORT/index.html"}; do
    for ((i = 0; i < 200; i++)); do
      kill -0 "$SERVER_PID" 2>/dev/null || return 1
      curl -s -o /dev/null -m 1 "${CURL_CA[@]}" "$url" && continue 2
      sleep 0.05
    done
    log "no answer from $url"
    return 1
  done
}

# Every file must come back whole with 200, over HTTPS as well: a server that
# serves the wrong thing would otherwise post meaningless numbers.  Also
# warms the page cache.
sanity_check() {
  local f want got base
  for base in "http://127.0.0.1:$SERVER_PORT" ${SERVER_TLS_PORT:+"https://127.0.0.1:$SERVER_TLS_PORT"}; do
    for f in index.html:11 16k.bin:16384 1m.bin:1048576 100m.bin:104857600; do
      want="200 ${f#*:}"
      got=$(curl -s -o /dev/null -m 30 "${CURL_CA[@]}" \
        -w '%{http_code} %{size_download}' "$base/${f%%:*}" || true)
      if [[ $got != "$want" ]]; then
        note "$1: GET $base/${f%%:*} gave '$got', expected '$want'"
        return 1
      fi
    done
  done
}

# What an OpenSSL client with its default settings (as wrk and ab are)
# negotiates with the server, whether the certificate verifies for
# 127.0.0.1, and whether sessions resume: a second connection offers the
# session (TLS 1.3 ticket) of the first, a third the session of the second.
# wrk offers each new connection the session of the one before, so a server
# that sends no new ticket on a resumed connection gets alternately full and
# resumed handshakes in https-resume.  One line in the report per server.
tls_probe() {
  local name=$1 dir="$WORK/tlscheck/$1" said=() i proto cipher group sig resumed req
  local opts=(-connect "127.0.0.1:$SERVER_TLS_PORT" -servername localhost -CAfile "$TLS_CERT" -ign_eof)
  mkdir -p "$dir"
  req=$'GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
  said[0]=$(printf '%s' "$req" | timeout 10 "${CLIENT_WRAP[@]}" openssl s_client "${opts[@]}" \
    -verify_ip 127.0.0.1 -verify_return_error -sess_out "$dir/session.0.pem" 2>&1 || true)
  for i in 1 2; do
    said[i]=$(printf '%s' "$req" | timeout 10 "${CLIENT_WRAP[@]}" openssl s_client "${opts[@]}" \
      -sess_in "$dir/session.$((i - 1)).pem" -sess_out "$dir/session.$i.pem" 2>&1 || true)
  done
  printf '%s\n=====\n' "${said[@]}" >"$dir/s_client.txt"
  read -r proto cipher < <(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)/\1 \2/p' <<<"${said[0]}" | head -1) || true
  group=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"${said[0]}" | head -1)
  sig=$(sed -n 's/^Peer signature type: //p' <<<"${said[0]}" | head -1)
  if [[ -z $proto ]] || ! grep -q '^Verification: OK' <<<"${said[0]}"; then
    note "$name: openssl s_client could not complete a verified handshake on its TLS port: $(grep -m1 -i error <<<"${said[0]}")"
    return 1
  fi
  if ! grep -q '^Reused, ' <<<"${said[1]}"; then
    resumed="no"
    note "$name did not resume a TLS session (openssl s_client -sess_in): its https-resume row is full handshakes"
  elif grep -q '^Reused, ' <<<"${said[2]}"; then
    resumed="yes, also from a resumed session"
  else
    resumed="yes, but a resumed connection brings no new ticket"
    note "$name resumes a TLS session but sends no new ticket on the resumed connection: in https-resume, wrk's handshakes alternate between full and resumed"
  fi
  meta "tls.$name" "$proto, $cipher, ${group:-?}, ${sig:-?} signature; session resumption: $resumed"
}

start_server() {
  local name=$1 round=$2
  SERVER_PID="" SERVER_PORT="" SERVER_TLS_PORT=""
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
  log "$name ready: pid $SERVER_PID, port $SERVER_PORT${SERVER_TLS_PORT:+, https port $SERVER_TLS_PORT}"
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
  "${CLIENT_WRAP[@]}" python3 "$LIB/idle.py" "$SERVER_PORT" "$IDLE_CONNS" 3 >"$out" 2>>"$WORK/idle.$name.err" &
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
# Load generators run under `taskset -c CLIENT_CPUS` when it is given.
run_workload() {
  local name=$1 wl=$2 round=$3 url="http://127.0.0.1:$SERVER_PORT"
  local raw="$WORK/raw/$name.$wl.$round.txt" kind=wrk cpu0 cpu1 ticks res
  local lua="$LIB/wrk_report.lua" d="${DURATION}s" opens0="" opens="" ktls0="" ktls=""
  # Hard cap so a hung server cannot stall the whole run.
  local cap=$((DURATION + 60))
  if is_https "$wl"; then
    url="https://127.0.0.1:$SERVER_TLS_PORT"
    ktls0=$(ktls_tx_count)
  fi
  # For the new-connection workloads, count the connections the kernel
  # accepted, to prove each request really had a connection of its own.
  case $wl in ab | close | https-handshake | https-resume) opens0=$(tcp_passive_opens) ;; esac
  cpu0=$(python3 "$LIB/proc.py" cpu "$SERVER_PID")
  case $wl in
    ab) kind=ab cap=300
        timeout "$cap" "${CLIENT_WRAP[@]}" ab -n "$AB_N" -c "$AB_C" -r -s 60 "$url/" >"$raw" 2>&1 || true ;;
    https-handshake)
      # ab opens a new connection and a new TLS session for every request
      # (it never offers a session to resume), so each is a full handshake;
      # -t makes it run for a duration (it stops early at 50,000 requests).
      kind=ab
      timeout "$cap" "${CLIENT_WRAP[@]}" ab -t "$DURATION" -c "$AB_C" -r -s 60 -f TLS1.3 \
        "$url/index.html" >"$raw" 2>&1 || true ;;
    *)
      # Connection: close makes the server answer with Connection: close and
      # hang up; wrk then counts the response and reconnects (a server that
      # ignored the header would show up in the connection count below).
      # Over TLS, wrk offers each new connection the session of the one
      # before, so https-resume is a resumed handshake per request where the
      # server hands out a new ticket on resumed connections (tls_probe).
      local hdr=()
      if [[ $wl == close || $wl == https-resume ]]; then hdr=(-H 'Connection: close'); fi
      timeout "$cap" "${CLIENT_WRAP[@]}" wrk -t"${WRK_T[$wl]}" -c"${WRK_C[$wl]}" -d"$d" \
        "${hdr[@]}" -s "$lua" "$url${WL_PATH[$wl]}" >"$raw" 2>&1 || true ;;
  esac
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    cpu1=$(python3 "$LIB/proc.py" cpu "$SERVER_PID")
    ticks=$((cpu1 - cpu0))
  else
    ticks=NA
    note "$name died during workload $wl (round $round)"
  fi
  if [[ -n $opens0 ]]; then
    opens=$(tcp_passive_opens)
    if [[ -n $opens ]]; then opens=$((opens - opens0)); fi
  fi
  if [[ -n $ktls0 ]]; then
    ktls=$(ktls_tx_count)
    KTLS_TX[$name]=$((${KTLS_TX[$name]:-0} + ktls - ktls0))
  fi
  if res=$(python3 "$LIB/parse.py" "$kind" "$raw"); then
    local req dur bytes err
    read -r req dur bytes err <<<"$res"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$wl" "$round" "$req" "$dur" "$bytes" "$err" "$ticks" >>"$WORK/results.tsv"
    log "$name $wl round $round: $req requests in ${dur}s, $err errors, $ticks ticks${opens:+, $opens connections accepted}"
    # The count covers the whole host, so other traffic can only raise it:
    # fewer accepted connections than requests means connections were reused.
    if [[ -n $opens ]] && ((opens < req)); then
      note "$name $wl round $round: $req requests over only $opens new connections: the server kept connections open, so these are not one-connection-per-request figures"
    fi
  else
    printf '%s\t%s\t%s\tNA\tNA\tNA\tNA\t%s\n' "$name" "$wl" "$round" "$ticks" >>"$WORK/results.tsv"
    note "$name workload $wl round $round produced no result: $(tail -1 "$raw" 2>/dev/null)"
  fi
}

# Connections whose sending side the kernel encrypted (kTLS, software or
# offloaded) since boot, from /proc/net/tls_stat; empty without a tls module.
ktls_tx_count() {
  awk '$1 == "TlsTxSw" || $1 == "TlsTxDevice" { n += $2 } END { if (NR) print n + 0 }' \
    /proc/net/tls_stat 2>/dev/null || true
}
declare -A KTLS_TX=()

# After the runs: whether kernel TLS really carried any server's responses.
report_ktls() {
  wants_https || return 0
  local s
  if [[ ! -r /proc/net/tls_stat ]]; then
    note "no /proc/net/tls_stat: the kernel has no tls module loaded, so every server encrypted in user space"
    return 0
  fi
  for s in "${SERVERS[@]}"; do
    [[ -n ${KTLS_TX[$s]:-} ]] || continue
    note "$s: kernel TLS encrypted the sending side of ${KTLS_TX[$s]} connections during its https workloads (/proc/net/tls_stat TlsTxSw + TlsTxDevice)"
  done
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

  source_tools_env
  raise_fd_limit
  ensure_tools
  check_cpu_sets
  build_ringhttpd
  prepare_baseline
  ((${#SERVERS[@]})) || { log "FATAL: no server left to measure"; exit 1; }
  make_docroot
  make_tls_cert
  check_tls_support
  collect_meta
  log "servers: ${SERVERS[*]}; workloads: ${WORKLOADS[*]}; workers $WORKERS; rounds $ROUNDS; work dir $WORK"
  if [[ -n $SERVER_CPUS$CLIENT_CPUS ]]; then
    log "server CPUs: ${SERVER_CPUS:-any}; load generator CPUs: ${CLIENT_CPUS:-any}"
  fi

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
      if ((round == 1)) && [[ -n $SERVER_TLS_PORT ]]; then tls_probe "$name" || true; fi
      for wl in "${WORKLOADS[@]}"; do
        # (A server without HTTPS was named in a note by check_tls_support.)
        if is_https "$wl" && [[ -z $SERVER_TLS_PORT ]]; then continue; fi
        run_workload "$name" "$wl" "$round"
        kill -0 "$SERVER_PID" 2>/dev/null || break
      done
      stop_server
    done
  done

  report_ktls
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
