#!/usr/bin/env bash
# Run every unit-test binary given as arguments, then every tests/cli/*.sh,
# and add up their "N passed, N failed" lines into one closing line.
set -u
cd "$(dirname "$0")/.." || exit 1
export BIN="${BIN:-bin}" BUILD="${BUILD:-build}"
export TMPDIR="${TMPDIR:-/tmp}"
passed=0 failed=0

tally() {   # tally NAME OUTPUT RC
    local line p f
    line=$(printf '%s\n' "$2" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -z "$line" ]; then
        echo "FAIL $1: no result line (exit $3)"; failed=$((failed + 1)); return
    fi
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $1: exit $3"; failed=$((failed + 1))
    fi
    printf '%-28s %s\n' "$1" "$line"
}

for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed' | tail -30
    tally "$(basename "$t")" "$out" $rc
done
for t in tests/cli/test_*.sh; do
    [ -e "$t" ] || continue
    out=$(bash "$t" 2>&1); rc=$?
    [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed' | tail -30
    tally "$(basename "$t" .sh)" "$out" $rc
done
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
