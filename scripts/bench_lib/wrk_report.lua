-- Loaded by scripts/bench.sh with `wrk -s`: prints the exact totals of a run
-- on one machine-readable line, instead of wrk's rounded human units.
-- Only done() is defined, so wrk keeps its fast path (no Lua per request).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d timeout=%d status=%d\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.timeout, e.status))
end
