#!/usr/bin/env bash
# test_reliability.sh - a trainer killed with SIGKILL at 20 random moments
# (its checkpoint always loads, --resume always continues), a file-size
# limit (ulimit -f) and a read-only output directory (one clear line, the
# previous checkpoint intact).
. "$(dirname "$0")/lib.sh"
head -300 data/villes.txt >"$T/names.txt"
sed -n 301,340p data/villes.txt >"$T/val.txt"
# A tiny MLP evaluated and saved after every step: the kills land in writes.
TINY=(--data "$T/names.txt" --val-data "$T/val.txt" --threads 1 --batch-size 8 --eval-every 1
      --d-model 4 --hidden 16 --context 3)
CK="$T/ck.safetensors"
step_of() { "$BIN/inspect" --tsv "$1" 2>/dev/null | awk -F'\t' '$1 == "meta.step" { print $2 }'; }

run mlp-train "${TINY[@]}" --steps 2 -o "$CK"
expect_rc 0 "first checkpoint"

# ---- kill -9 at random moments
loads=0 resumed=0 advanced=0
last=$(step_of "$CK")
for i in $(seq 20); do
    "$BIN/mlp-train" "${TINY[@]:0:4}" --threads 1 --resume "$CK" --steps 1000000000 -o "$CK" \
        >/dev/null 2>&1 </dev/null &
    pid=$!
    sleep "0.$(printf '%02d' $((RANDOM % 12 + 3)))"   # 0.03 to 0.14 s
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    "$BIN/generate" -m "$CK" -n 1 >/dev/null 2>&1 && loads=$((loads + 1))
    s=$(step_of "$CK")
    [ -n "$s" ] && [ "$s" -ge "$last" ] && resumed=$((resumed + 1))
    [ -n "$s" ] && [ "$s" -gt "$last" ] && advanced=$((advanced + 1))
    last=${s:-$last}
done
LAST="20 x (mlp-train --resume & kill -KILL)"
check "kill -9: the checkpoint loaded all 20 times ($loads)" '[ "$loads" -eq 20 ]'
check "kill -9: the step never went back ($resumed of 20)" '[ "$resumed" -eq 20 ]'
check "kill -9: training went on across the kills (advanced $advanced times)" '[ "$advanced" -ge 1 ]'
run mlp-train "${TINY[@]:0:4}" --resume "$CK" --steps $((last + 3)) -o "$CK"
expect_rc 0 "--resume after the kills"
expect_out "^mlp	[0-9]+	$((last + 3))	"
check "kill -9: only temporary files beside the checkpoint" \
    '[ -z "$(ls "$T" | grep -v -e "^ck\.safetensors" -e "^names.txt$" -e "^val.txt$" -e "^out$" -e "^err$")" ]'
rm -f "$T"/ck.safetensors.tmp.*   # what a kill in the middle of a write leaves behind

# ---- a file-size limit: one line, the previous checkpoint intact, no temporary file
cp "$CK" "$T/before.safetensors"
(ulimit -f 4; "$BIN/mlp-train" "${TINY[@]:0:4}" --resume "$CK" --steps $((last + 5)) -o "$CK" \
    >"$T/out" 2>"$T/err"); RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); LAST="ulimit -f 4; mlp-train"
expect_fail "ck.safetensors: write failed: File too large"
check "ulimit -f: the checkpoint is as it was" 'cmp -s "$CK" "$T/before.safetensors"'
check "ulimit -f: no temporary file left" '[ -z "$(ls "$T" | grep "\.tmp\.")" ]'

# ---- a read-only output directory (as root, the trainer runs as nobody)
mkdir -p "$T/ro"
cp "$CK" "$T/ro/ck.safetensors"
chmod 755 "$T"; chmod 644 "$T"/*.txt "$T/ro/ck.safetensors"; chmod 555 "$T/ro"
as_user=()
[ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
if [ "$(id -u)" -ne 0 ] || [ ${#as_user[@]} -gt 0 ]; then
    "${as_user[@]}" "$BIN/mlp-train" "${TINY[@]:0:4}" --resume "$T/ro/ck.safetensors" --steps $((last + 5)) \
        -o "$T/ro/ck.safetensors" >"$T/out" 2>"$T/err" </dev/null; RC=$?
    OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); LAST="mlp-train -o read-only/ck.safetensors"
    expect_fail "cannot write .*ro/ck.safetensors: directory .*ro is missing or read-only"
    check "read-only: the checkpoint is as it was" 'cmp -s "$T/ro/ck.safetensors" "$T/before.safetensors"'
else
    echo "skip: read-only directory (root without setpriv)"
fi
chmod 755 "$T/ro"
finish
