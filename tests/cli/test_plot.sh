#!/usr/bin/env bash
# tools/plot: every kind on small TSVs in the formats the programs write
# (PNG of the size asked for, SVG that parses), and bad input (one line,
# exit 1) and usage errors (exit 2).  Skipped without gnuplot.
. tests/cli/lib.sh

PLOT=tools/plot
if ! command -v gnuplot >/dev/null; then
    echo "skip: gnuplot is not installed (tools/install-deps.sh installs gnuplot-nox)"
    finish; exit
fi
plot() { LAST="plot $*"; "$PLOT" "$@" >"$T/out" 2>"$T/err" </dev/null; RC=$?; OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); }
# "W H" of a PNG, from its IHDR chunk (bytes 16-23, big-endian)
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216 + $2*65536 + $3*256 + $4, $5*16777216 + $6*65536 + $7*256 + $8 }'; }
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }
svg_ok() { if command -v xmllint >/dev/null; then xmllint --noout "$1" 2>/dev/null; else grep -q '</svg>' "$1"; fi; }

# ---- inputs as the programs write them
printf 'step\ttrain_loss\tval_loss\tlr\ttokens_per_s\n10\t3.1\t3.0\t0.0003\t9000\n20\t2.6\t2.7\t0.0003\t9100\n30\t2.2\t2.5\t0.0003\t9000\n' >"$T/small.tsv"
printf 'step\ttrain_loss\tval_loss\tlr\ttokens_per_s\tcopied\tdistinct\tmean_len\n10\t3.0\t3.1\t0.0003\t9000\t0.0000\t1.0000\t12.1\n20\t2.0\t2.6\t0.0003\t9000\t0.1000\t0.9000\t10.5\n' >"$T/big.tsv"
S='model\tparams\tsteps\ttrain_loss\tval_loss\tbest_val_loss\tbest_step\tseconds\tsteps_per_s\ttokens_per_s\n'
{ printf "$S"; printf 'mlp\t1000\t30\t2.1\t2.3\t2.2\t20\t1\t30\t900\n'
  printf "$S"; printf 'mlp\t4000\t30\t2.0\t2.2\t2.1\t30\t1\t30\t900\n'
  printf 'model\torder\tsmoothing\tparams\tsteps\ttrain_loss\tval_loss\tseconds\n'
  printf 'ngram\t2\tkn\t600\t0\t2.3\t2.4\t0.0\n'; } >"$T/cat.tsv"
printf 'arch\tmodel\tparams\tseed\tval_loss\tbest_val_loss\nGRU d16\trnn\t900\t1\t2.5\t2.4\nGRU d16\trnn\t900\t2\t2.6\t2.45\nGRU d32\trnn\t3000\t1\t2.3\t2.2\n' >"$T/sweep.tsv"
printf 'token\tx\ty\tneighbour_1\tcosine_1\n<SOS>\t-0.6\t0.2\ta\t0.5\n \t0.1\t0.1\ta\t0.2\na\t0.5\t-0.4\te\t0.8\ne\t0.6\t-0.3\ta\t0.8\nb\t-0.2\t0.5\tc\t0.7\n' >"$T/emb.tsv"
printf 'log10_lo\tlog10_hi\tfeatures\n-inf\t-6\t3\n-6\t-5.5\t0\n-2\t-1.5\t10\n-1.5\t-1\t20\n' >"$T/hist.tsv"

# ---- every kind, PNG then SVG
for k in "curves small.tsv big.tsv" "copied big.tsv" "params cat.tsv sweep.tsv" "embeddings emb.tsv" "density hist.tsv"; do
    set -- $k; kind=$1; shift
    files=(); for f in "$@"; do files+=("$T/$f"); done
    plot "$kind" "${files[@]}" -o "$T/$kind.png" --size 640x400
    expect_rc 0 "$kind png"
    check "$kind: a PNG of 640x400" 'is_png "$T/$kind.png" && [ "$(png_size "$T/$kind.png")" = "640 400" ]'
    plot "$kind" "${files[@]}" -o "$T/$kind.svg" --title "a title"
    expect_rc 0 "$kind svg"
    check "$kind: an SVG that parses" 'svg_ok "$T/$kind.svg"'
done
plot curves "$T/small.tsv" -o "$T/default.png"
check "default size 800x500" '[ "$(png_size "$T/default.png")" = "800 500" ]'
LAST="plot curves - < small.tsv"; "$PLOT" curves - -o "$T/stdin.png" <"$T/small.tsv" 2>"$T/err"; RC=$?
expect_rc 0 "stdin"
check "the legend names the files" 'grep -q ">small<" "$T/curves.svg" && grep -q ">big<" "$T/curves.svg"'
check "params: one line per architecture" 'grep -q ">GRU d16<" "$T/params.svg" && grep -q ">ngram<" "$T/params.svg" && grep -q ">mlp<" "$T/params.svg"'

# ---- bad input: one line, exit 1, no output file
plot curves "$T/emb.tsv" -o "$T/bad.png"
expect_fail 'emb\.tsv: no column step'
check "nothing written" '[ ! -e "$T/bad.png" ]'
printf 'step\ttrain_loss\tval_loss\n10\tabc\t2\n' >"$T/nan.tsv"
plot curves "$T/nan.tsv" -o "$T/bad.png"
expect_fail 'nan\.tsv: line 2: "abc" is not a number'
plot curves "$T/missing.tsv" -o "$T/bad.png"
expect_fail 'missing\.tsv: cannot read'
: >"$T/empty.tsv"
plot density "$T/empty.tsv" -o "$T/bad.png"
expect_fail 'empty'
printf 'step\ttrain_loss\tval_loss\n' >"$T/header.tsv"
plot curves "$T/header.tsv" -o "$T/bad.png"
expect_fail 'no rows'
plot copied "$T/small.tsv" -o "$T/bad.png"
expect_fail 'small\.tsv: no copied column'
printf 'params\tval_loss\n10\t2\n' >"$T/noname.tsv"
plot params "$T/noname.tsv" -o "$T/bad.png"
expect_fail 'no column arch or model'
plot curves "$T/small.tsv" -o "$T/nodir/x.png"
expect_fail 'cannot write'

# ---- usage errors
plot --help
expect_rc 0; expect_out '^Usage: tools/plot KIND'
plot bogus "$T/small.tsv" -o "$T/x.png"
expect_usage
plot curves "$T/small.tsv"
expect_usage
plot curves "$T/small.tsv" -o "$T/x.jpg"
expect_usage
plot curves "$T/small.tsv" -o "$T/x.png" --size 10
expect_usage
plot embeddings "$T/emb.tsv" "$T/emb.tsv" -o "$T/x.png"
expect_usage
finish
