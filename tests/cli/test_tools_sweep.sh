#!/usr/bin/env bash
# tools/sweep: a tiny grid run with GNU parallel (two local slots, then
# --sshlogin : with two slots), the collected table, resuming, a failed
# run, and bad grids (one line, exit 1).  Skipped without GNU parallel.
. tests/cli/lib.sh

SWEEP=tools/sweep
sweep() { LAST="sweep $*"; "$SWEEP" "$@" >"$T/out" 2>"$T/err" </dev/null; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); }
if ! command -v parallel >/dev/null; then
    echo "skip: GNU parallel is not installed (tools/install-deps.sh --plots installs it)"
    finish; exit
fi

head -n 400 data/villes.txt >"$T/names.txt"
cat >"$T/tiny.grid" <<GRID
# two architectures, two sizes, two seeds; the n-gram once per order
seeds 1 2
arch mlp mlp-train --data $T/names.txt --d-model 8 --hidden {size} --steps 20 --eval-every 10 --batch-size 16 --threads 1 --seed {seed}   # comment
sizes mlp 16 32
arch ngram ngram --data $T/names.txt -n {size}
sizes ngram 1 2 3
GRID

sweep --help
expect_rc 0; expect_out '^Usage: tools/sweep GRID'; expect_out 'sizes NAME VALUE'
sweep "$T/tiny.grid" --dry-run
expect_rc 0
check "dry run: seven commands" '[ "$(printf "%s\n" "$OUT" | grep -c "^mkdir")" -eq 7 ]'
check "dry run: runs nothing" '[ ! -e "$T/tiny/summary.tsv" ]'

# ---- locally, two slots
sweep "$T/tiny.grid" -j 2
expect_rc 0
check "a summary per run" '[ "$(ls "$T"/tiny/*.summary.tsv | wc -l)" -eq 7 ]'
check "a log per trainer run" '[ "$(ls "$T"/tiny/*.log.tsv | wc -l)" -eq 4 ]'
check "the table: header and 7 rows" '[ "$(wc -l <"$T/tiny/summary.tsv")" -eq 8 ] &&
    head -1 "$T/tiny/summary.tsv" | grep -qx "run	arch	size	seed	model	params	steps	train_loss	val_loss	best_val_loss	seconds"'
check "rows as the summaries say" 'grep -q "^mlp-32-s2	mlp	32	2	mlp	[0-9]*	20	" "$T/tiny/summary.tsv" &&
    grep -q "^ngram-3	ngram	3	-	ngram	" "$T/tiny/summary.tsv"'
check "the n-gram best_val_loss is its val_loss" 'awk -F"\t" "\$5 == \"ngram\" && \$9 != \$10 { bad = 1 } END { exit bad }" "$T/tiny/summary.tsv"'
check "seeds differ" '[ "$(awk -F"\t" "\$1 == \"mlp-16-s1\" { print \$9 }" "$T/tiny/summary.tsv")" != "$(awk -F"\t" "\$1 == \"mlp-16-s2\" { print \$9 }" "$T/tiny/summary.tsv")" ]'
cp "$T/tiny/summary.tsv" "$T/first.tsv"

# ---- resumable: the runs done are skipped
rm "$T/tiny/mlp-16-s2.summary.tsv"
touch -d '2000-01-01' "$T/tiny/ngram-1.safetensors"
sweep "$T/tiny.grid" -j 2
expect_rc 0; expect_err '1 of 7 runs to do'
check "a run done is not run again" '[ "$(stat -c %Y "$T/tiny/ngram-1.safetensors")" -lt 1000000000 ]'
check "the run redone gives the same row (seeded)" 'cmp -s <(cut -f1-10 "$T/first.tsv") <(cut -f1-10 "$T/tiny/summary.tsv")'
if command -v gnuplot >/dev/null; then
    LAST="plot params"; tools/plot params "$T/tiny/summary.tsv" -o "$T/params.png" 2>"$T/err"; RC=$?
    expect_rc 0 "the table is what tools/plot params reads"
fi

# ---- --sshlogin : (this machine, as GNU parallel names it) with two slots
sweep "$T/tiny.grid" -j 2 --sshlogin : -d "$T/ssh"
expect_rc 0
check "--sshlogin :: the same table" 'cmp -s <(cut -f1-10 "$T/first.tsv") <(cut -f1-10 "$T/ssh/summary.tsv")'

# ---- a run that fails: named, the others collected, exit 1
printf 'arch bad mlp-train --data %s --hidden 0 --steps 2\narch good ngram --data %s -n 2\n' "$T/names.txt" "$T/names.txt" >"$T/fail.grid"
sweep "$T/fail.grid"
expect_rc 1; expect_err '^sweep: 1 of 2 runs failed: bad \('
check "the failure's stderr is kept" 'grep -q hidden "$T/fail/bad.err"'
check "the good run is collected" 'grep -q "^good	" "$T/fail/summary.tsv"'

# ---- bad grids: one line naming the line, exit 1
bad_grid() {   # bad_grid TEXT ERROR-REGEX
    printf '%s\n' "$1" >"$T/bad.grid"; sweep "$T/bad.grid" --dry-run; expect_fail "$2"
}
bad_grid 'seeds 1' 'no arch line'
bad_grid 'frobnicate 3' 'bad\.grid:1: unknown directive'
bad_grid 'arch x ngram -n {size}' 'arch x uses \{size\}: give a sizes line'
bad_grid $'arch x ngram -n 2\nsizes x 1 2' 'has sizes but no \{size\}'
bad_grid 'sizes y 1' 'no arch y above'
bad_grid 'arch x ngram -o out.safetensors' 'do not give -o'
bad_grid 'arch x/y ngram' 'bad arch name'
bad_grid $'arch x ngram -n {size}\nsizes x 1 a;b' 'bad size'
sweep "$T/missing.grid"
expect_fail 'missing\.grid: cannot read'

# ---- usage errors
sweep
expect_usage
sweep "$T/tiny.grid" -j 0
expect_usage
sweep "$T/tiny.grid" --bogus
expect_usage
finish
