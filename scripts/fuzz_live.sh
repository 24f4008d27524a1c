#!/bin/sh
# Live-socket fuzzer of the release server; see scripts/fuzz_live.py (--seed N --seconds S ...).
exec python3 "$(dirname "$0")/fuzz_live.py" "$@"
