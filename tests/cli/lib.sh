# lib.sh - helpers for the CLI tests (sourced by tests/cli/test_*.sh).
#
#   run generate -n 3          # runs $BIN/generate; sets $OUT, $ERR, $RC
#   expect_rc 0 "three names"  # one check each; failures print the context
#   expect_out "^[a-z]"        # stdout matches an extended regex
#   expect_err "invalid UTF-8" # stderr matches
#   expect_err_lines 1         # stderr has exactly N lines
#   tiny_transformer           # $T/names.txt, $T/val.txt, $DATA, $T/tf.safetensors
#   same_checkpoint A B        # same model and state, provenance aside
#   finish                     # prints "N passed, N failed"; exit status
set -u
BIN="${BIN:-bin}"
T=$(mktemp -d "${TMPDIR:-/tmp}/villes-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
PASSED=0 FAILED=0 OUT= ERR= RC=0 LAST=

run() {
    LAST="$*"
    local prog=$1; shift
    "$BIN/$prog" "$@" >"$T/out" 2>"$T/err" </dev/null; RC=$?
    OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
}
run_stdin() {   # run_stdin FILE PROG ARGS...: like run, with FILE on stdin
    local in=$1 prog=$2; shift 2
    LAST="$prog $* < $in"
    "$BIN/$prog" "$@" >"$T/out" 2>"$T/err" <"$in"; RC=$?
    OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
}
pass() { PASSED=$((PASSED + 1)); }
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL: $1"; echo "  command: $LAST"; echo "  exit: $RC"
    echo "  stdout: $(printf '%s' "$OUT" | head -5)"; echo "  stderr: $(printf '%s' "$ERR" | head -5)"
}
check() { if eval "$2"; then pass; else fail "$1"; fi; }   # check DESC SHELL-CONDITION
expect_rc() { if [ "$RC" -eq "$1" ]; then pass; else fail "${2:-exit $1}: expected exit $1"; fi; }
expect_out() { if printf '%s\n' "$OUT" | grep -Eq -- "$1"; then pass; else fail "stdout should match '$1'"; fi; }
expect_err() { if printf '%s\n' "$ERR" | grep -Eq -- "$1"; then pass; else fail "stderr should match '$1'"; fi; }
expect_err_lines() {
    local n; n=$(printf '%s' "$ERR" | grep -c '')
    if [ "$n" -eq "$1" ]; then pass; else fail "stderr should have $1 line(s), has $n"; fi
}
# A usage error: exit 2, the message, then the "Try" line.
expect_usage() {
    expect_rc 2 "usage error"
    expect_err "Try '.* --help'"
    expect_err_lines 2
}
# A runtime error: exit 1, one line "PROG: ..." matching $1.
expect_fail() {
    expect_rc 1 "runtime error"
    expect_err_lines 1
    expect_err "$1"
}
# The fixture of the interpretability tests: $T/names.txt (400 names),
# $T/val.txt (60), $DATA naming both, and a tiny Transformer trained on them
# for 30 steps in $T/tf.safetensors.
tiny_transformer() {
    head -400 data/villes.txt > "$T/names.txt"
    sed -n 401,460p data/villes.txt > "$T/val.txt"
    DATA="--data $T/names.txt --val-data $T/val.txt"
    "$BIN/transformer-train" $DATA --d-model 16 --heads 2 --layers 2 --batch-size 16 --steps 30 \
        --eval-every 0 --lr 3e-3 -o "$T/tf.safetensors" >/dev/null 2>&1
}
# same_checkpoint A B: the two files hold the same tensors (name, shape,
# bytes) and metadata, provenance aside (it names the command that wrote them).
same_checkpoint() {
    local fields='^(file|bytes|provenance\.)'
    [ "$("$BIN/inspect" --tsv "$1" | grep -Ev "$fields")" = "$("$BIN/inspect" --tsv "$2" | grep -Ev "$fields")" ] &&
        [ "$("$BIN/inspect" --tensors "$1")" = "$("$BIN/inspect" --tensors "$2")" ]
}
finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
