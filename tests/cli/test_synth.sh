#!/usr/bin/env bash
# explore synth: new names that make a feature fire, each checked against
# explore features (its activation) and the data (not in it); bad inputs.
. "$(dirname "$0")/lib.sh"

tiny_transformer
"$BIN/sae-train" -m "$T/tf.safetensors" $DATA --steps 30 --features 32 --eval-every 0 \
    -o "$T/sae.safetensors" >/dev/null 2>&1
P="-m $T/tf.safetensors --sae $T/sae.safetensors --data $T/names.txt --format tsv"
# the feature active most often
id=$("$BIN/explore" freq $P --sort freq | sed -n 2p | cut -f1)

run explore --help
expect_rc 0 "--help"
expect_out "^  synth --id N "
expect_out "^      --beam W "
expect_out "^  -n, --count K "
run explore synth $P
expect_usage
expect_err "needs --id"
for bad in "--beam 0" "-n 0" "--weight 0" "--pos 3" "--top 2"; do
    run explore synth $P --id "$id" $bad
    expect_usage
done
run explore features $P -n 3
expect_usage
run explore synth $P --id 32
expect_fail "feature 32 out of range"

run explore synth $P --id "$id" -n 4 --beam 8
expect_rc 0 "synth"
expect_out '^name	activation	position	loss_per_char	score$'
rows=$(printf '%s\n' "$OUT" | sed 1d)
check "at most 4 names, at least one" '[ "$(printf "%s\n" "$rows" | grep -c .)" -ge 1 ] && [ "$(printf "%s\n" "$rows" | wc -l)" -le 4 ]'
check "new names: none is in --data" '! printf "%s\n" "$rows" | cut -f1 | grep -Fxq -f "$T/names.txt"'
check "the feature fires, losses positive" 'printf "%s\n" "$rows" | awk -F"\t" "\$2 <= 0 || \$4 <= 0 { exit 1 }"'
check "best first" '[ "$(printf "%s\n" "$rows" | cut -f5)" = "$(printf "%s\n" "$rows" | cut -f5 | sort -gr)" ]'
# explore features finds the same activation at the same letter.
name=$(printf '%s\n' "$rows" | sed -n 1p | cut -f1)
act=$(printf '%s\n' "$rows" | sed -n 1p | cut -f2)
at=$(printf '%s\n' "$rows" | sed -n 1p | cut -f3)
printf '%s\n' "$name" > "$T/one.txt"
run explore features -m "$T/tf.safetensors" --sae "$T/sae.safetensors" --data "$T/one.txt" --id "$id" --top 1 --format tsv
check "explore features: activation $act at letter $at of $name" \
    'printf "%s\n" "$OUT" | awk -F"\t" -v p="$at" -v a="$act" "\$4 == p { d = \$6 - a; ok = d < 1e-3 && d > -1e-3 } END { exit !ok }"'
finish
