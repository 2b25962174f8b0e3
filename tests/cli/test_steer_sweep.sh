#!/usr/bin/env bash
# steer --sweep: the dose-response table (one row per value, its shares
# checked against the names themselves), and its bad inputs: an empty or
# malformed range, a regex that does not compile, a feature out of range.
. "$(dirname "$0")/lib.sh"

tiny_transformer
"$BIN/sae-train" -m "$T/tf.safetensors" $DATA --steps 30 --features 32 --layer 1 --eval-every 0 \
    -o "$T/sae.safetensors" >/dev/null 2>&1
P="-m $T/tf.safetensors --sae $T/sae.safetensors"
HEADER='^value	matching	distinct	copied	loss	length$'

run steer --help
expect_rc 0 "--help"
for flag in "--sweep F=LO:HI:STEP" "--sweep-add" "--match REGEX" "--contains STR" "--data FILE"; do
    expect_out "^ +$flag "
done

# Bad ranges and regexes are usage errors, found before any model is read.
for bad in "--sweep 3=5:1:1 --contains a" "--sweep 3=0:1:0 --contains a" "--sweep 3=0:1:-1 --contains a" \
           "--sweep 3=0:1 --contains a" "--sweep 3=0:1:1:1 --contains a" "--sweep =0:1:1 --contains a" \
           "--sweep x=0:1:1 --contains a" "--sweep 3=a:1:1 --contains a" "--sweep 3=0:1e5:0.001 --contains a" \
           "--sweep 3=0:1:1" "--sweep 3=0:1:1 --match a --contains a" "--match a" "--contains a" \
           "--sweep 3=0:1:1 --contains a --prefix sa" "--sweep 3=0:1:1 --contains a --score $T/val.txt"; do
    run steer -m "$T/missing.safetensors" $bad
    expect_usage
done
run steer $P --sweep 3=5:1:1 --contains a
expect_err "empty range"
run steer $P --sweep 3=0:1:1 --match 'sa(int'
expect_usage
expect_err "^steer: --match 'sa\(int': "
run steer $P --sweep 32=0:1:1 --contains a
expect_fail "feature 32 out of range"

# Value 0 added is no steering at all: the names are steer's (and so
# generate's) with the same seed, and every column can be recomputed.
"$BIN/steer" $P -n 30 --seed 3 > "$T/gen.txt"
run steer $P --sweep 5=0:0:1 --sweep-add --contains a -n 30 --seed 3 --data "$T/gen.txt"
expect_rc 0 "sweep of one value"
expect_out "$HEADER"
row=$(printf '%s\n' "$OUT" | sed -n 2p)
field() { printf '%s\n' "$row" | cut -f"$1"; }
share() { awk -v a="$1" 'BEGIN { printf "%.4f", a / 30 }'; }
check "one row" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 2 ]'
check "matching: names containing 'a'" '[ "$(field 2)" = "$(share "$(grep -c a "$T/gen.txt")")" ]'
check "distinct share" '[ "$(field 3)" = "$(share "$(sort -u "$T/gen.txt" | wc -l)")" ]'
check "every name copied from --data (the names themselves)" '[ "$(field 4)" = 1.0000 ]'
# characters: the bytes that do not continue a UTF-8 sequence
LC_ALL=C tr -d '\200-\277' < "$T/gen.txt" > "$T/ascii.txt"
check "mean length" '[ "$(field 6)" = "$(awk "{ n += length(\$0) } END { printf \"%.2f\", n / NR }" "$T/ascii.txt")" ]'
# The loss column is the unsteered model's mean loss over the names (when
# none is too short for --score, it is --score's mean).
if [ "$(awk 'length($0) < 3' "$T/gen.txt" | wc -l)" -eq 0 ]; then
    "$BIN/generate" -m "$T/tf.safetensors" --score "$T/gen.txt" 2>"$T/score" >/dev/null
    check "loss is the unsteered loss of the names" \
        'grep -q "mean loss: $(field 5)[0-9]* nats" "$T/score"'
fi

# A range: one row per value, shares in [0, 1]; a strong clamp moves the loss.
run steer $P --sweep 5=0:40:20 --match '^' -n 20
expect_rc 0 "sweep of three values"
expect_out "$HEADER"
check "three rows: 0, 20, 40" '[ "$(printf "%s\n" "$OUT" | sed 1d | cut -f1 | tr "\n" " ")" = "0 20 40 " ]'
check "'^' matches every name" '[ "$(printf "%s\n" "$OUT" | sed 1d | cut -f2 | sort -u)" = 1.0000 ]'
check "shares within [0, 1]" 'printf "%s\n" "$OUT" | sed 1d | awk -F"\t" "{ for (i = 2; i <= 4; i++) if (\$i < 0 || \$i > 1) exit 1 }"'
check "clamping to 40 changes the loss" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f5)" != "$(printf "%s\n" "$OUT" | sed -n 4p | cut -f5)" ]'
run steer $P --sweep 5=0:0:1 --contains zzzz -n 5
check "--contains with no match" '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f2)" = 0.0000 ]'
run steer $P --sweep 5=0:0:1 --contains a -n 5 --data "$T/missing.txt"
expect_fail "missing.txt"
finish
