#!/usr/bin/env bash
# Where does a new-connection-per-request workload spend its time on a many-core machine?
# Runs each server variant under wrk (by default `-H 'Connection: close'`: a new connection per
# request) with the servers and the client on separate CPU sets, and prints, per variant:
# requests/s and bytes/s, server CPU per request, how busy
# the server's and the client's CPUs were (with softirq), listen-queue drops, which side holds
# the TIME_WAIT sockets (the side that sent the first FIN), and ringhttpd's per-thread CPU and
# context switches. With --perf (and perf on PATH) it adds io_uring tracepoint counts, an on-CPU
# profile of the server CPUs and the kernel stacks where ringhttpd's threads go to sleep.
#
#   scripts/manycore_probe.sh [--server-cpus 0-3] [--client-cpus 4-15] [--wrk-threads 12]
#       [--connections 400] [--seconds 4] [--workers 4] [--variants LIST] [--perf]
#       [--ringhttpd-bin PATH] [--alt-bin PATH] [--scaling 1,2,4,8] [--workload W]
#
# Workloads (--workload): close (the default: /index.html, 11 bytes, Connection: close),
# small (the same, keep-alive), 16k, 1m (keep-alive), 100m (one connection streaming 100 MiB).
# --connections and --wrk-threads apply to each (100m always uses one of each).
#
# Variants: ring (pinned workers, the default), ring-nopin, ring-procs (one single-worker
# process per server CPU, all on one SO_REUSEPORT port), ring-2x (twice the workers), alt
# (--alt-bin, pinned), nginx, lighttpd, h2o. --scaling N,.. runs ringhttpd and nginx with N workers on
# the first N server CPUs. Uses only tools on PATH (no installs, no curl, no python), so it
# runs from a tool bundle (see scripts/bench_bundle.sh).
set -uo pipefail
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# shellcheck source=scripts/bench_lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib/servers.sh"

SERVER_CPUS=0-3
CLIENT_CPUS=4-15
WRK_THREADS=12
CONNS=400
SECS=4
WORKERS=4
VARIANTS=ring,ring-nopin,ring-procs,ring-2x,nginx,h2o
PERF=0
RING_BIN=$(command -v ringhttpd || echo target/release/ringhttpd)
ALT_BIN=""
SCALING=""
WORKLOAD=close
while (($#)); do
  case $1 in
    --server-cpus) SERVER_CPUS=$2; shift ;;
    --client-cpus) CLIENT_CPUS=$2; shift ;;
    --wrk-threads) WRK_THREADS=$2; shift ;;
    --connections) CONNS=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    --variants) VARIANTS=$2; shift ;;
    --perf) PERF=1 ;;
    --ringhttpd-bin) RING_BIN=$2; shift ;;
    --alt-bin) ALT_BIN=$2; shift ;;
    --scaling) SCALING=$2; shift ;;
    --workload) WORKLOAD=$2; shift ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "manycore_probe: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

WORK=$(mktemp -d /tmp/manycore-probe.XXXXXX)
ROOT=$WORK/www
mkdir -p "$ROOT"
printf 'hello world' >"$ROOT/index.html"
WRK_ARGS=()
case $WORKLOAD in
  close) URL_PATH=/index.html; WRK_ARGS=(-H 'Connection: close') ;;
  small) URL_PATH=/index.html ;;
  16k) URL_PATH=/16k.bin; head -c 16384 /dev/urandom >"$ROOT/16k.bin" ;;
  1m) URL_PATH=/1m.bin; head -c 1048576 /dev/urandom >"$ROOT/1m.bin" ;;
  100m) URL_PATH=/100m.bin; WRK_THREADS=1; CONNS=1; head -c 104857600 /dev/urandom >"$ROOT/100m.bin" ;;
  *) echo "manycore_probe: unknown workload $WORKLOAD" >&2; exit 2 ;;
esac
HZ=$(getconf CLK_TCK)
PORT=18000
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# "0-3,8" -> "0 1 2 3 8"
expand_cpus() {
  local part out=()
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then
      mapfile -t -O "${#out[@]}" out < <(seq "${part%-*}" "${part#*-}")
    else
      out+=("$part")
    fi
  done
  echo "${out[@]}"
}
read -ra SCPU <<<"$(expand_cpus "$SERVER_CPUS")"
read -ra CCPU <<<"$(expand_cpus "$CLIENT_CPUS")"

# Sum of (busy, softirq, total) jiffies over the given CPUs.
cpu_sample() {
  local want=" $* "
  awk -v want="$want" '/^cpu[0-9]/ {
      n = substr($1, 4); if (index(want, " " n " ") == 0) next
      t = 0; for (i = 2; i <= 9; i++) t += $i
      busy += t - $5 - $6; soft += $8; total += t
    } END { print busy, soft, total }' /proc/stat
}

# The PID and all its descendants.
tree_pids() {
  local all=("$1") frontier=("$1") next p
  while ((${#frontier[@]})); do
    next=()
    for p in "${frontier[@]}"; do
      mapfile -t -O "${#next[@]}" next < <(awk -v p="$p" '$4 == p {print $1}' /proc/[0-9]*/stat 2>/dev/null)
    done
    all+=("${next[@]}")
    frontier=("${next[@]}")
  done
  echo "${all[@]}"
}

# utime+stime (jiffies) of the processes, all threads included.
proc_cpu() {
  local p sum=0 v
  for p in "$@"; do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

netstat_drops() {
  awk '/^TcpExt:/ { if (!h) { for (i = 2; i <= NF; i++) name[i] = $i; h = 1 } else {
        for (i = 2; i <= NF; i++) if (name[i] ~ /^(ListenOverflows|ListenDrops|TCPReqQFullDrop|TCPBacklogDrop)$/) printf "%s=%s ", name[i], $i } }' /proc/net/netstat
}

# TIME_WAIT sockets on the server's side of PORT (local port) and on the client's side.
time_waits() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v hex="$hex" '$4 == "06" { split($2, l, ":"); split($3, r, ":");
      if (l[2] == hex) s++; else if (r[2] == hex) c++ } END { printf "server %d client %d", s, c }' /proc/net/tcp
}

ready() {
  local i
  for ((i = 0; i < 200; i++)); do
    if { exec 9<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
      printf 'GET /index.html HTTP/1.0\r\n\r\n' >&9
      local line
      read -r -t 2 line <&9
      exec 9<&-
      [[ $line == *" 200 "* ]] && return 0
    fi
    sleep 0.05
  done
  return 1
}

start_ring() { # bin cpus workers extra...
  local bin=$1 cpus=$2 workers=$3
  shift 3
  taskset -c "$cpus" "$bin" -a 127.0.0.1 -p "$PORT" -r "$ROOT" -w "$workers" "$@" 2>>"$WORK/ring.log" &
  PIDS+=($!)
}

# One single-worker process per server CPU, all on one SO_REUSEPORT port.
start_ring_procs() {
  local c
  for c in "${SCPU[@]:0:$WORKERS}"; do start_ring "$RING_BIN" "$c" 1; done
}

start_nginx() { # workers cpus
  local dir=$WORK/nginx-$PORT
  mkdir -p "$dir"
  write_nginx_conf "$dir" "$PORT" "$1" "$ROOT" reuseport "open_file_cache max=1000 inactive=60s;"
  taskset -c "$2" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" 2>>"$dir/stderr.log" &
  PIDS+=($!)
}

start_lighttpd() { # workers cpus
  local dir=$WORK/lighttpd-$PORT
  mkdir -p "$dir"
  write_lighttpd_conf "$dir" "$PORT" "$1" "$ROOT"
  # Its master stops the workers with kill(0, ...): a session of its own keeps us out of that.
  taskset -c "$2" setsid lighttpd -D -f "$dir/lighttpd.conf" 2>>"$dir/stderr.log" &
  PIDS+=($!)
}

start_h2o() { # threads cpus
  local dir=$WORK/h2o-$PORT
  mkdir -p "$dir"
  write_h2o_conf "$dir" "$PORT" "$1" "$ROOT"
  taskset -c "$2" h2o -c "$dir/h2o.conf" 2>>"$dir/stderr.log" &
  PIDS+=($!)
}

stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null
  done
  PIDS=()
}

# cpus as a list "a,b,c" of the first N server CPUs
first_cpus() { local IFS=,; echo "${SCPU[*]:0:$1}"; }

thread_table() { # pid
  local t
  for t in /proc/"$1"/task/*; do
    awk -v hz="$HZ" '{ c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\).*/, "", c);
        n = split($0, f, ") "); split(f[n], g, " "); printf "%s:%.2fs", c, (g[12] + g[13]) / hz }' "$t/stat"
    awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END { printf "/vcs=%d/ncs=%d  ", v, n }' "$t/status"
  done
  echo
}

# run NAME START-COMMAND...: start, warm up, measure, report one line.
run_variant() {
  local name=$1
  shift
  PORT=$((PORT + 1))
  "$@"
  if ! ready "$PORT"; then
    echo "| $name | did not start: $(tail -2 "$WORK/ring.log" 2>/dev/null | tr '\n' ' ') |"
    stop_all
    return
  fi
  local pids=()
  read -ra pids <<<"$(for p in "${PIDS[@]}"; do tree_pids "$p"; done | tr '\n' ' ')"
  taskset -c "$CLIENT_CPUS" wrk -t"$WRK_THREADS" -c"$CONNS" -d1s "${WRK_ARGS[@]}" "http://127.0.0.1:$PORT$URL_PATH" >/dev/null 2>&1
  local s0 c0 p0 d0 s1 c1 p1 d1 out
  read -ra s0 <<<"$(cpu_sample "${SCPU[@]}")"
  read -ra c0 <<<"$(cpu_sample "${CCPU[@]}")"
  p0=$(proc_cpu "${pids[@]}")
  d0=$(netstat_drops)
  out=$(taskset -c "$CLIENT_CPUS" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" "${WRK_ARGS[@]}" "http://127.0.0.1:$PORT$URL_PATH" 2>&1)
  read -ra s1 <<<"$(cpu_sample "${SCPU[@]}")"
  read -ra c1 <<<"$(cpu_sample "${CCPU[@]}")"
  p1=$(proc_cpu "${pids[@]}")
  d1=$(netstat_drops)
  local rps errs bps
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  bps=$(awk '/^Transfer\/sec/ {print $2}' <<<"$out")
  errs=$(awk '/Socket errors|Non-2xx/ {printf "%s ", $0}' <<<"$out")
  awk -v n="$name" -v rps="${rps:-0}" -v hz="$HZ" -v secs="$SECS" -v pc=$((p1 - p0)) \
    -v sb=$((s1[0] - s0[0])) -v ss=$((s1[1] - s0[1])) -v st=$((s1[2] - s0[2])) \
    -v cb=$((c1[0] - c0[0])) -v ct=$((c1[2] - c0[2])) -v tw="$(time_waits "$PORT")" \
    -v drops="$d0 -> $d1" -v errs="$errs" -v bps="$bps" 'BEGIN {
      req = rps * secs
      printf "| %s | %.0f | %s | %.1f | %.0f%% (softirq %.0f%%) | %.0f%% | %.1f | %s | %s |\n", n, rps, bps,
        req ? pc / hz * 1e6 / req : 0, st ? 100 * sb / st : 0, st ? 100 * ss / st : 0,
        ct ? 100 * cb / ct : 0, req ? sb / hz * 1e6 / req : 0, tw, errs
      print "    netstat: " drops > "/dev/stderr"
    }'
  if [[ $name == ring* || $name == alt* ]]; then
    echo "    threads: $(thread_table "${PIDS[0]}")" >&2
  fi
  stop_all
}

# perf evidence for one running ringhttpd (or nginx) under load.
profile() { # name start-command...
  local name=$1
  shift
  PORT=$((PORT + 1))
  "$@"
  ready "$PORT" || { echo "profile $name: did not start"; stop_all; return; }
  taskset -c "$CLIENT_CPUS" wrk -t"$WRK_THREADS" -c"$CONNS" -d14s -H 'Connection: close' "http://127.0.0.1:$PORT/index.html" >/dev/null 2>&1 &
  local wrk=$!
  sleep 1
  echo "### $name: io_uring and scheduler tracepoints on CPUs $SERVER_CPUS, 3 s"
  perf stat -a -C "$SERVER_CPUS" -e 'io_uring:*' -e sched:sched_switch -e sched:sched_wakeup -- sleep 3 2>&1 |
    awk '$1 ~ /^[0-9,]+$/ && $1 != "0" {print "    " $1, $2}'
  local comms
  comms=$(for p in "${PIDS[@]}"; do tree_pids "$p"; done | tr " " "\n" | while read -r p; do cat /proc/"$p"/task/*/comm; done 2>/dev/null | sort -u | paste -sd,)
  echo "### $name: on-CPU profile of its threads on CPUs $SERVER_CPUS (3 s, top symbols)"
  perf record -q -F 999 -g -a -C "$SERVER_CPUS" -o "$WORK/on.data" -- sleep 3 >/dev/null 2>&1
  perf report -i "$WORK/on.data" --stdio --no-children -g none --percentage relative --comms "$comms" --sort sym --percent-limit 0.6 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -60 | sed 's/^/    /'
  echo "### $name: by DSO"
  perf report -i "$WORK/on.data" --stdio --no-children -g none --percentage relative --comms "$comms" --sort dso 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -8 | sed 's/^/    /'
  if [[ $name == ring* ]]; then
    echo "### $name: where its threads block (sched_switch stacks, 2 s, top 12)"
    perf record -q -e sched:sched_switch -g -p "${PIDS[0]}" -o "$WORK/off.data" -- sleep 2 >/dev/null 2>&1
    perf script -i "$WORK/off.data" -F comm,ip,sym 2>/dev/null | awk '
        /^[^ \t]/ { if (stack != "") n[stack]++; stack = $1; depth = 0; next }
        /^[ \t]+/ { if (depth < 9 && $NF !~ /^(__schedule|schedule|\[unknown\])$/) { stack = stack ";" $NF; depth++ } }
        END { if (stack != "") n[stack]++; for (s in n) print n[s], s }' | sort -rn | head -12 | sed 's/^/    /'
  fi
  wait "$wrk"
  stop_all
}

echo "# manycore probe, workload $WORKLOAD: servers on CPUs $SERVER_CPUS ($WORKERS workers), wrk -t$WRK_THREADS -c$CONNS -d${SECS}s ${WRK_ARGS[*]} $URL_PATH on CPUs $CLIENT_CPUS"
echo "# $(nproc) CPUs, kernel $(uname -r), $(date -u +%FT%TZ)"
echo
echo "| variant | req/s | transfer/s | server CPU µs/req | server CPUs busy | client CPUs busy | server-CPU µs/req (all on those CPUs) | TIME_WAIT | wrk errors |"
echo "|---|--:|--:|--:|--:|--:|--:|---|---|"
IFS=, read -ra VLIST <<<"$VARIANTS"
for v in "${VLIST[@]}"; do
  case $v in
    ring) run_variant ring start_ring "$RING_BIN" "$SERVER_CPUS" "$WORKERS" ;;
    ring-nopin) run_variant ring-nopin start_ring "$RING_BIN" "$SERVER_CPUS" "$WORKERS" --no-pin ;;
    ring-2x) run_variant ring-2x start_ring "$RING_BIN" "$SERVER_CPUS" $((WORKERS * 2)) ;;
    ring-procs)
      run_variant ring-procs start_ring_procs ;;
    alt) [[ -n $ALT_BIN ]] && run_variant alt start_ring "$ALT_BIN" "$SERVER_CPUS" "$WORKERS" ;;
    none) ;;
    nginx) run_variant nginx start_nginx "$WORKERS" "$SERVER_CPUS" ;;
    lighttpd) run_variant lighttpd start_lighttpd "$WORKERS" "$SERVER_CPUS" ;;
    h2o) run_variant h2o start_h2o "$WORKERS" "$SERVER_CPUS" ;;
    *) echo "unknown variant $v" >&2 ;;
  esac
done
if [[ -n $SCALING ]]; then
  IFS=, read -ra NS <<<"$SCALING"
  for n in "${NS[@]}"; do
    run_variant "ring w=$n" start_ring "$RING_BIN" "$(first_cpus "$n")" "$n"
    [[ -n $ALT_BIN ]] && run_variant "alt w=$n" start_ring "$ALT_BIN" "$(first_cpus "$n")" "$n"
    run_variant "nginx w=$n" start_nginx "$n" "$(first_cpus "$n")"
  done
fi
if ((PERF)) && command -v perf >/dev/null; then
  echo
  profile ring start_ring "$RING_BIN" "$SERVER_CPUS" "$WORKERS"
  profile nginx start_nginx "$WORKERS" "$SERVER_CPUS"
fi
