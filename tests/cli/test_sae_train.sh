#!/usr/bin/env bash
# sae-train: flags, usage errors, a tiny SAE on a tiny Transformer, the
# evaluation summary, TopK, resume, and pairing with the right model.
. "$(dirname "$0")/lib.sh"

tiny_transformer
"$BIN/transformer-train" $DATA --d-model 16 --heads 2 --layers 2 --batch-size 16 --steps 5 \
    --eval-every 0 --seed 9 -o "$T/other.safetensors" >/dev/null 2>&1
SAE="-m $T/tf.safetensors $DATA --eval-every 10"
# col NAME: the value of column NAME in the summary in $OUT.
col() {
    printf '%s\n' "$OUT" | awk -F'\t' -v c="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i }
                                               NR == 2 && k { print $k }'
}

run sae-train --help
expect_rc 0 "--help"
expect_out "^Usage: sae-train"
expect_out "--topk K"
expect_out "--data FILE +training names, one per line \(default data/villes.txt\)"
check "--help: --data is not said to be required" '! printf "%s\n" "$OUT" | grep -q "(required)"'
expect_out "^  l0 explained_var mse ce_clean ce_sae ce_zero ce_score dead_frac dense_frac$"
expect_out "^  kl_sae kl_zero kl_score cos_sim l2_ratio$"
expect_out "--topk K +TopK: keep the K largest pre-activations \(default 16\)"
expect_out "--l1-warmup N"
expect_out "--resample-every N"
run sae-train --version
expect_rc 0 "--version"
expect_out "^sae-train "

run sae-train $SAE --frobnicate
expect_usage
run sae-train $SAE --features 32 --expansion 2
expect_usage
run sae-train $SAE --topk 4 --l1 0.01
expect_usage
run sae-train $SAE --l1-warmup 10
expect_usage
expect_err "go with --l1"
run sae-train $SAE --topk 4 --resample-every 10
expect_usage
run sae-train $SAE --layer 3 --steps 5 -o "$T/x.safetensors"
expect_usage
expect_err "--layer 3"
run sae-train $SAE --topk 0
expect_usage
run sae-train -m "$T/missing.safetensors" $DATA --steps 5 -o "$T/x.safetensors"
expect_fail "missing.safetensors"
run sae-train -m tests/data/fixtures/mlp.safetensors $DATA --steps 5 -o "$T/x.safetensors"
expect_fail "not a 'transformer'"

# A tiny SAE with the defaults (TopK, k 16): one summary, the training
# columns then the evaluation's.
run sae-train $SAE --steps 40 --features 32 --lr 1e-3 -o "$T/sae.safetensors" --log "$T/log.tsv"
expect_rc 0 "training"
expect_out "^model	params	steps	train_loss	val_loss	best_val_loss	best_step	seconds	steps_per_s	tokens_per_s	l0	explained_var	mse	ce_clean	ce_sae	ce_zero	ce_score	dead_frac	dense_frac	kl_sae	kl_zero	kl_score	cos_sim	l2_ratio$"
expect_out "^sae	1072	40	"
check "two lines of output" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 2 ]'
check "as many values as columns" '[ "$(printf "%s\n" "$OUT" | awk -F"\t" "{ print NF }" | sort -u)" = 24 ]'
# config FILE: the checkpoint's SAE config from "variant" on, unquoted
config() { grep -a -o 'variant[^}]*' "$1" | head -1 | tr -d '\\"'; }
check "the default is TopK with k = 16" '[ "$(config "$T/sae.safetensors")" = "variant:topk,l1:0,k:16" ]'
check "default L0 is at most 16" 'awk -v v="$(col l0)" "BEGIN { exit !(v > 0 && v <= 16) }"'
check "KL score, cosine and L2 ratio are sane" 'awk -v k="$(col kl_score)" -v c="$(col cos_sim)" -v r="$(col l2_ratio)" -v a="$(col kl_sae)" -v z="$(col kl_zero)" "BEGIN { exit !(k <= 1 && c >= -1 && c <= 1 && r >= 0 && a >= 0 && z > 0) }"'
check "log: l0 and dead_frac after the common columns" '[ "$(head -1 "$T/log.tsv")" = "$(printf "step\ttrain_loss\tval_loss\tlr\ttokens_per_s\tl0\tdead_frac")" ]'
check "log: l0 within [0, 16], dead_frac a fraction" 'sed 1d "$T/log.tsv" | awk -F"\t" "NF != 7 || \$6 < 0 || \$6 > 16 || \$7 < 0 || \$7 > 1 { exit 1 }"'
check "log: the last dead_frac is the summary's (validation rows)" '[ "$(tail -1 "$T/log.tsv" | cut -f7)" = "$(col dead_frac)" ]'
check "explained variance in (0, 1]" 'awk -v v="$(col explained_var)" "BEGIN { exit !(v > 0 && v <= 1) }"'
check "CE loss score in [0, 1.1]" 'awk -v v="$(col ce_score)" "BEGIN { exit !(v >= 0 && v <= 1.1) }"'
check "dead and dense are fractions" 'awk -v a="$(col dead_frac)" -v b="$(col dense_frac)" "BEGIN { exit !(a >= 0 && a <= 1 && b >= 0 && b <= 1) }"'
check "checkpoint written" '[ -s "$T/sae.safetensors" ]'
check "log has a row per evaluation" '[ "$(wc -l < "$T/log.tsv")" -eq 5 ]'
# The clean loss of the evaluation is the Transformer's validation loss.
"$BIN/generate" -m "$T/tf.safetensors" --score "$T/val.txt" >/dev/null 2>"$T/score"
clean=$(col ce_clean)
check "ce_clean is the model's loss on the validation names" 'grep -q "mean loss: $clean " "$T/score"'

# The checkpoint names its model and layer.
check "metadata: model_file, model_hash, layer" \
    'grep -a -q "\"model_file\":\"$T/tf.safetensors\"" "$T/sae.safetensors" && grep -a -q "\"layer\":\"2\"" "$T/sae.safetensors" && grep -a -q "\"model_hash\":\"[0-9a-f]\{16\}\"" "$T/sae.safetensors"'

# Layer 1 and the TopK variant.
run sae-train $SAE --steps 20 --layer 1 --expansion 2 --topk 4 -o "$T/topk.safetensors"
expect_rc 0 "topk"
expect_out "^sae	1072	20	"
check "L0 is at most k" 'awk -v v="$(col l0)" "BEGIN { exit !(v > 0 && v <= 4) }"'

# Resume to 30 steps: same result as 30 in one go (AuxK's state included).
run sae-train $SAE --steps 30 --topk 4 --seed 5 -o "$T/straight.safetensors"
straight=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
run sae-train $SAE --steps 15 --topk 4 --seed 5 -o "$T/half.safetensors"
run sae-train -m "$T/tf.safetensors" $DATA --resume "$T/half.safetensors" --steps 30 -o "$T/resumed.safetensors"
expect_rc 0 "resume"
resumed=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "resumed run ends where the straight run ends" '[ -n "$straight" ] && [ "$straight" = "$resumed" ]'
run sae-train -m "$T/tf.safetensors" $DATA --resume "$T/half.safetensors" --steps 30 --features 32 -o "$T/r.safetensors"
expect_usage
# The L1 recipe: normalised coefficient, warm-up and resampling, kept by
# the checkpoint, so that a resumed run ends where the straight one ends.
L1="--l1 0.5 --l1-warmup 10 --resample-every 5 --features 32 --seed 3"
run sae-train $SAE --steps 30 $L1 -o "$T/l1.safetensors"
expect_rc 0 "l1 with warm-up and resampling"
straight=$(printf '%s\n' "$OUT" | sed -n 2p | cut -f3-5)
check "the config holds the raw coefficient, not 0.5" \
    'config "$T/l1.safetensors" | grep -q "^variant:l1,l1:[0-9.e-]*,k:0$" && [ "$(config "$T/l1.safetensors")" != "variant:l1,l1:0.5,k:0" ]'
run sae-train $SAE --steps 15 $L1 -o "$T/l1half.safetensors"
run sae-train -m "$T/tf.safetensors" $DATA --resume "$T/l1half.safetensors" --steps 30 -o "$T/l1r.safetensors"
expect_rc 0 "resume l1"
check "resumed l1 run ends where the straight run ends" '[ -n "$straight" ] && [ "$straight" = "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f3-5)" ]'
run sae-train -m "$T/tf.safetensors" $DATA --resume "$T/l1half.safetensors" --steps 30 --l1 0.5 -o "$T/r.safetensors"
expect_usage
expect_err "the checkpoint's on --resume"

# Resuming on another model is refused.
run sae-train -m "$T/other.safetensors" $DATA --resume "$T/half.safetensors" --steps 30 -o "$T/r.safetensors"
expect_fail "trained on another model"

finish
