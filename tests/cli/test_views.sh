#!/usr/bin/env bash
# explore dashboard, path and attention on a tiny Transformer + SAE trained
# here: the files and tables they write, their bad inputs, and the pages in
# a headless browser (skipped with a message when chromium is absent).
. "$(dirname "$0")/lib.sh"

tiny_transformer
"$BIN/sae-train" -m "$T/tf.safetensors" $DATA --steps 30 --features 24 --lr 1e-3 --eval-every 0 \
    -o "$T/sae.safetensors" >/dev/null 2>&1
M="-m $T/tf.safetensors"
P="$M --sae $T/sae.safetensors --data $T/names.txt"
col() { printf '%s\n' "$OUT" | awk -F'\t' -v c="$1" 'NR > 1 { print $c }'; }

# path: a row per (layer, position); cosines in [-1, 1]; ranks in 1..V-2.
run explore path $M saint-lo
expect_rc 0 "path"
expect_out "^layer	position	input	next	predicted	norm	cos_next	cos_input	cos_predicted	rank_predicted	rank_next	emb_x	emb_y	dir_x	dir_y	state_x	state_y$"
check "3 layers x 9 positions" '[ "$(printf "%s\n" "$OUT" | sed 1d | wc -l)" -eq 27 ]'
check "cosines in [-1, 1], ranks >= 1" 'printf "%s\n" "$OUT" | awk -F"\t" "NR > 1 && (\$7 < -1 || \$7 > 1 || \$10 < 1 || \$11 < 1) { bad = 1 } END { exit bad }"'
check "last position: next is <EOS>" '[ "$(printf "%s\n" "$OUT" | awk -F"\t" "\$2 == 8 { print \$4 }" | sort -u)" = "<EOS>" ]'
run explore path $M saint-lo --pos 2
check "--pos: one position" '[ "$(col 2 | sort -u)" = 2 ] && [ "$(col 3 | sort -u)" = a ]'
run explore path $M saint-lo --format text
expect_out "^position 0: input <SOS>, next s"
run explore path $M lyon --svg "$T/path.svg"
check "svg written" 'grep -q "^<svg" "$T/path.svg" && grep -q "</svg>" "$T/path.svg" && [ -z "$OUT" ]'
run explore path $M lyon --pos 1 --html "$T/path.html"
check "html page" 'grep -q "<svg" "$T/path.html" && grep -c "<circle" "$T/path.html" | grep -qx 3'
run explore path $M lyon --pos 5
expect_fail "--pos 5 out of range: 'lyon' has positions 0 to 4"
run explore path $M ""
expect_fail "empty NAME"
run explore path $M "lyon!"
expect_fail "not in the vocabulary"
run explore path $M
expect_usage
run explore path $M lyon --html "$T/a.html" --svg "$T/a.svg"
expect_usage

# attention: a row per (layer, head, query, key <= query); each query's
# weights sum to 1.
run explore attention $M lyon
expect_rc 0 "attention"
expect_out "^layer	head	query	query_token	key	key_token	weight$"
check "2 layers x 2 heads x 15 pairs" '[ "$(printf "%s\n" "$OUT" | sed 1d | wc -l)" -eq 60 ]'
check "rows sum to 1" 'printf "%s\n" "$OUT" | awk -F"\t" "NR > 1 { s[\$1\" \"\$2\" \"\$3] += \$7 } END { for (k in s) if (s[k] < 0.9999 || s[k] > 1.0001) bad = 1; exit bad }"'
check "causal" 'printf "%s\n" "$OUT" | awk -F"\t" "NR > 1 && \$5 > \$3 { bad = 1 } END { exit bad }"'
run explore attention $M lyon --html "$T/attn.html"
check "a grid per head" '[ "$(grep -c "<table class=\"grid\"" "$T/attn.html")" -eq 4 ]'
run explore attention $M lyon --format text --color never
expect_out "^layer 2, head 1$"
run explore attention $M ""
expect_fail "empty NAME"
run explore attention $M lyon --pos 1
expect_usage

# dashboard: a page per feature, the index, the two tables.
run explore dashboard $P --top 3 --html "$T/dash"
expect_rc 0 "dashboard"
expect_out "^units	count	labelled	precise	share_precise	median_precision	median_f1$"
expect_out "^features	24	"
expect_out "^neurons	16	"
check "24 feature pages and the index" '[ "$(ls "$T/dash"/feature-*.html | wc -l)" -eq 24 ] && [ -e "$T/dash/index.html" ]'
check "labels.tsv: 24 features and 16 neurons" '[ "$(grep -c "^feature	" "$T/dash/labels.tsv")" -eq 24 ] && [ "$(grep -c "^neuron	" "$T/dash/labels.tsv")" -eq 16 ]'
check "precisions and recalls in [0, 1]" 'awk -F"\t" "NR > 1 && (\$7 < 0 || \$7 > 1 || \$8 < 0 || \$8 > 1) { bad = 1 } END { exit bad }" "$T/dash/labels.tsv"'
check "monosemanticity.tsv = stdout" '[ "$(cat "$T/dash/monosemanticity.tsv")" = "$OUT" ]'
check "self-contained pages" '! grep -Eqi "<script|https?://[a-z]|<link|<img" "$T/dash"/*.html'
check "every link points to a page" 'for h in $(grep -oh "href=\"[^\"]*\"" "$T/dash"/*.html | sort -u | sed "s/href=\"//; s/\"$//"); do [ -e "$T/dash/$h" ] || exit 1; done'
live=$(awk -F'\t' 'NR > 1 && $1 == "feature" && $5 > 0 { print $2; exit }' "$T/dash/labels.tsv")
check "a live feature's page: histogram, logits, nearest, examples" 'f="$T/dash/feature-$live.html"; grep -q "<svg" "$f" && grep -q "pushed up" "$f" && grep -q "Nearest features" "$f" && grep -q "class=\"name\"" "$f"'
run explore dashboard $P
expect_usage
expect_err "needs --html DIR"
run explore dashboard $P --html -
expect_usage
touch "$T/file"
run explore dashboard $P --html "$T/file"
expect_fail "cannot create the directory"
run explore dashboard $M --sae "$T/nope.safetensors" --data "$T/names.txt" --html "$T/d2"
expect_fail "nope.safetensors"

# A feature's page (the richest: SVG, tables, shading) in a browser: it
# loads, logs no console message, and the screenshot has the window's size.
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "skipped: the headless browser checks (chromium not installed)"
else
    for page in "feature-$live"; do
        (cd "$T" && timeout 120 "$browser" --headless --no-sandbox --disable-gpu --user-data-dir="$T/chromium" \
            --enable-logging=stderr --v=0 \
            --window-size=900,700 --screenshot="$T/$page.png" "file://$T/dash/$page.html") >"$T/browser.log" 2>&1
        check "$page: screenshot taken" '[ -s "$T/$page.png" ]'
        check "$page: no console message" '! grep -E ":CONSOLE|Uncaught" "$T/browser.log"'
        check "$page: 900 x 700" '[ "$(od -An -tu1 -j16 -N8 "$T/$page.png" | tr -s " " | sed "s/^ //")" = "0 0 3 132 0 0 2 188" ]'
    done
fi
finish
