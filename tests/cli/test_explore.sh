#!/usr/bin/env bash
# explore: every subcommand on a tiny Transformer + SAE trained here and on
# the pair imported from PyTorch; TSV shapes, the text and HTML views, the
# attribution sum, and the bad inputs (wrong pair, ids and positions out of
# range, unknown commands).
. "$(dirname "$0")/lib.sh"

tiny_transformer
"$BIN/sae-train" -m "$T/tf.safetensors" $DATA --steps 30 --features 32 --lr 1e-3 --eval-every 0 \
    -o "$T/sae.safetensors" >/dev/null 2>&1
"$BIN/sae-train" -m "$T/tf.safetensors" $DATA --steps 10 --features 32 --layer 1 --eval-every 0 \
    -o "$T/sae1.safetensors" >/dev/null 2>&1
M="-m $T/tf.safetensors"
P="$M --sae $T/sae.safetensors"
IMP="-m tests/data/fixtures/import_transformer.safetensors --sae tests/data/fixtures/import_sae.safetensors"

run explore --help
expect_rc 0 "--help"
expect_out "^Usage: explore COMMAND"
run explore --version
expect_rc 0 "--version"
run explore
expect_usage
run explore frobnicate
expect_usage
expect_err "unknown command 'frobnicate'"
run explore features $P --frobnicate
expect_usage
run explore embeddings $M --html "$T/x.html"
expect_usage
expect_err "does not apply"
run explore logits $P
expect_usage
run explore attribute $P saint-malo
expect_usage
run explore lens $M
expect_usage

# features: one row per (feature, rank, name, position, letter, activation).
run explore features $P --data "$T/names.txt" --top 3
expect_rc 0 "features"
expect_out "^feature	rank	name	position	letter	activation	frequency$"
check "ranks 1..3, positions = letters" 'printf "%s\n" "$OUT" | awk -F"\t" "NR > 1 { if (\$2 < 1 || \$2 > 3 || \$4 < 1 || \$4 > length(\$3) || \$7 <= 0 || \$7 > 1) bad = 1 } END { exit bad }"'
run explore features $P --data "$T/names.txt" --top 2 --id 5
expect_rc 0 "one feature"
check "only feature 5" '[ "$(printf "%s\n" "$OUT" | sed 1d | cut -f1 | sort -u)" = 5 ]'
run explore features $P --data "$T/names.txt" --id 32
expect_fail "feature 32 out of range"
run explore features $P --data "$T/names.txt" --top 2 --format text --color always
expect_rc 0 "text view"
check "shaded letters" 'grep -q "$(printf "\033\\[48;5;")" "$T/out"'
run explore features $P --data "$T/names.txt" --top 2 --format text --color never
check "no escapes without colour" '! grep -q "$(printf "\033")" "$T/out"'
expect_out "^feature [0-9]+ +active on"
run explore features $P --data "$T/names.txt" --top 2 --html "$T/features.html"
expect_rc 0 "html"
check "html page written" 'grep -q "^<!DOCTYPE html>" "$T/features.html" && grep -q "</html>" "$T/features.html"'
check "self-contained page" '! grep -Eqi "<script|https?:|<link" "$T/features.html"'

# neurons: the residual dimensions.
run explore neurons $M --data "$T/names.txt" --top 1 --layer 1
expect_rc 0 "neurons"
expect_out "^neuron	rank	name	position	letter	activation	frequency$"
check "16 neurons" '[ "$(printf "%s\n" "$OUT" | sed 1d | cut -f1 | sort -u | wc -l)" -eq 16 ]'
run explore neurons $M --data "$T/names.txt" --layer 3
expect_fail "--layer 3"

# freq, sortable, and the counts below 10%, 1%, 0.1%, 0.01%.
run explore freq $P --data "$T/names.txt" --sort freq
expect_rc 0 "freq"
expect_out "^feature	active	frequency$"
check "32 rows" '[ "$(printf "%s\n" "$OUT" | sed 1d | wc -l)" -eq 32 ]'
check "sorted by frequency" 'printf "%s\n" "$OUT" | sed 1d | cut -f3 | sort -g -r -c'
run explore freq $P --data "$T/names.txt" --summary
expect_out "^below	features$"
expect_out "^0.01	[0-9]+$"

# logits: every token but <pad> and <SOS>, ranked.
run explore logits $P --id 3
expect_rc 0 "logits"
expect_out "^rank	token	logit$"
check "all the tokens, ranked" '[ "$(printf "%s\n" "$OUT" | sed 1d | wc -l)" -eq $(( $(printf "%s\n" "$OUT" | sed 1d | cut -f2 | sort -u | wc -l) )) ] && printf "%s\n" "$OUT" | sed 1d | cut -f3 | sort -g -r -c'
run explore logits $P --id 99
expect_fail "feature 99 out of range"

# embeddings: PCA and neighbours.
run explore embeddings $M --neighbours 2
expect_rc 0 "embeddings"
expect_out "^token	x	y	neighbour_1	cosine_1	neighbour_2	cosine_2$"
expect_out "^<EOS>	"
run explore embeddings $M --format text --color never
expect_out "nearest neighbours"

# lens: a row per (layer, position, rank).
run explore lens $M saint-lô --top 2
expect_rc 0 "lens"
expect_out "^layer	position	input	next	rank	prediction	probability$"
check "3 layers x 9 positions x 2" '[ "$(printf "%s\n" "$OUT" | sed 1d | wc -l)" -eq 54 ]'
expect_out "^2	8	ô	<EOS>	1	"
run explore lens $M "saint-ß"
expect_fail "not in the vocabulary"

# attribute: the dla column sums to the logit, at the last layer and at layer 1.
sum_ok() { awk -F'\t' 'NR > 1 && $1 != "logit" { s += $4 } $1 == "logit" { l = $4 } END { d = s - l; exit !(NR > 3 && d < 1e-4 && d > -1e-4) }' "$T/out"; }
for pos in 0 3 6 9; do
    run explore attribute $P saint-malo --pos $pos
    expect_rc 0 "attribute --pos $pos"
    check "dla sums to the logit at position $pos" sum_ok
done
expect_out "^part	id	activation	dla	act_x_grad	ablation_dlogp$"
expect_out "^error	-	-	"
expect_out "^bias	-	-	"
run explore attribute $M --sae "$T/sae1.safetensors" saint-malo --pos 4 --target -
expect_rc 0 "attribute, layer 1"
expect_out "^later_layers	"
check "dla sums to the logit with later_layers" sum_ok
run explore attribute $P saint-malo --pos 11
expect_fail "position 11 is past the end"
run explore attribute $P saint-malo --pos 2 --target ß
expect_fail "not in the vocabulary"
run explore attribute $P saint-malo --pos 6 --format text --color never
expect_out "^= logit"
run explore attribute $P saint-malo --pos 6 --html -
expect_out "^<!DOCTYPE html>"

# sae-stats: the evaluation and the histogram.
run explore sae-stats $P $DATA
expect_rc 0 "sae-stats"
expect_out "^l0	explained_var	mse	ce_clean	ce_sae	ce_zero	ce_score	dead_frac	dense_frac	kl_sae	kl_zero	kl_score	cos_sim	l2_ratio$"
check "KL score below 1, cosine within [-1, 1]" 'printf "%s\n" "$OUT" | awk -F"\t" "NR == 2 { exit !(\$12 <= 1 && \$13 >= -1 && \$13 <= 1 && \$14 >= 0) }"'
run explore sae-stats $P $DATA --format text
expect_out "^  KL-divergence score +[0-9.-]+$"
expect_out "^  cosine\(x, x\^\), \|x\^\| / \|x\| +[0-9.-]+, [0-9.]+$"
run explore sae-stats $P $DATA --histogram
expect_out "^log10_lo	log10_hi	features$"
check "13 bins holding the 32 features" '[ "$(printf "%s\n" "$OUT" | sed 1d | awk -F"\t" "{ s += \$3 } END { print NR, s }")" = "13 32" ]'

# Bad pairs: an SAE of another model, a non-SAE file.
run explore features $M --sae tests/data/fixtures/sae.safetensors
expect_fail "trained on another model"
run explore freq $M --sae "$T/tf.safetensors"
expect_fail "not a 'sae'|holds a 'transformer'"
run explore lens -m tests/data/fixtures/mlp.safetensors abc
expect_fail "not a 'transformer'"

# The pair imported from PyTorch: the clean loss is PyTorch's (import_expected.tsv).
run explore sae-stats $IMP --data tests/data/fixtures/import_names.txt --val-data tests/data/fixtures/import_names.txt
expect_rc 0 "imported pair"
check "clean loss as PyTorch's" 'printf "%s\n" "$OUT" | sed -n 2p | awk "{ d = \$4 - 2.1670675; exit !(d < 1e-5 && d > -1e-5) }"'
run explore features $IMP --data "$T/names.txt" --top 1 --id 0
expect_rc 0 "imported features"
run explore attribute $IMP saint-malo --pos 5
check "imported attribution sums" sum_ok

# Without -m and --sae: the shipped weights beside bin/, whatever the current
# directory (/tmp here), as an explicit -m and --sae give; a copy of the
# program in a tree without weights/ finds none and names the file.
mkdir -p "$T/tree/bin" && cp "$BIN/explore" "$T/tree/bin/" && ln -s "$PWD/weights" "$T/tree/weights"
run explore attribute -m weights/transformer.safetensors --sae weights/sae.safetensors saint-martin --pos 6
WANT=$OUT
cd /tmp; BIN="$T/tree/bin" run explore attribute saint-martin --pos 6; cd - >/dev/null
expect_rc 0 "shipped weights found from /tmp"
check "the shipped pair's attribution" '[ -n "$WANT" ] && [ "$OUT" = "$WANT" ]'
rm "$T/tree/weights"
cd /tmp; BIN="$T/tree/bin" run explore attribute saint-martin --pos 6; cd - >/dev/null
expect_fail "weights/transformer.safetensors"

finish
