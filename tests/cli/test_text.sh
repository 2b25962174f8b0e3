#!/usr/bin/env bash
# Running text for the sequence trainers (trtext.h): corpus preparation
# (Gutenberg header/footer, several books, --val-text, BOM, CRLF, invalid
# UTF-8), transformer-train --text with characters and BPE subwords,
# generate --chars (exact character counts, a sliding window) and --score
# on a text model, resume, usage errors.
. "$(dirname "$0")/lib.sh"

# A small "book": 1,000 characters of French text, the last a newline (no
# Gutenberg markers).
body() {
    local s="Le petit chat dort au soleil, et la pluie tombe sur Paris. Qu'il est doux de ne rien faire !
"
    local out=""
    while [ ${#out} -lt 1000 ]; do out="$out$s"; done
    printf '%s\n' "${out:0:999}"
}
body > "$T/book.txt"
{
    printf 'The Project Gutenberg eBook of Tartuffe\n#licence text ©\n'
    printf '*** START OF THE PROJECT GUTENBERG EBOOK TARTUFFE ***\n'
    body
    printf '*** END OF THE PROJECT GUTENBERG EBOOK TARTUFFE ***\nmore licence #\n'
} > "$T/gutenberg.txt"
TINY="--d-model 16 --heads 2 --layers 1 --batch-size 4 --window 16 --eval-every 0 --steps 6"
# Column N of the summary's values line.
col() { printf '%s\n' "$OUT" | sed -n 2p | cut -f"$1"; }
# Characters of the last output, its final newline excluded.
out_chars() { echo $(( $(LC_ALL=C.UTF-8 wc -m < "$T/out") - 1 )); }
# generate --chars N from MODEL: exactly N characters.
expect_chars() {
    run generate -m "$1" --chars "$2" --seed 2
    expect_rc 0 "--chars $2"
    check "exactly $2 characters" '[ "$(out_chars)" = '"$2"' ]'
}

# ---- usage errors -------------------------------------------------------------
run transformer-train --help
expect_rc 0 "--help"
for flag in "--text FILE" "--val-text FILE" "--keep-gutenberg" "--tokenizer T" "--vocab-size N" "--window N"; do
    check "--help names $flag" 'printf "%s\n" "$OUT" | grep -q -- "$flag"'
done
run transformer-train --data "$T/book.txt" --window 8
expect_usage
expect_err "--window applies to --text only"
run transformer-train --data "$T/book.txt" --keep-gutenberg
expect_usage
run transformer-train --text "$T/book.txt" --vocab-size 50
expect_usage
expect_err "--vocab-size applies to --tokenizer bpe"
run transformer-train --text "$T/book.txt" --tokenizer words
expect_usage
run transformer-train --text "$T/book.txt" --data "$T/book.txt"
expect_usage
run transformer-train --text "$T/book.txt" --val-data "$T/book.txt"
expect_usage
expect_err "--val-text"
run transformer-train --text "$T/book.txt" --window 16 --max-len 8 -o "$T/x.safetensors"
expect_fail "--window 16 is longer than max_len 8"

# ---- corpus preparation --------------------------------------------------------
# The last 10% validates: 100 characters, 99 predicted.
run transformer-train --text "$T/book.txt" $TINY -o "$T/c.safetensors"
expect_rc 0 "--text on characters"
expect_out "^model	.*	val_tokens	val_chars	val_loss_per_char$"
check "99 validation tokens" '[ "$(col 11)" = 99 ] && [ "$(col 12)" = 99 ]'
check "per char = per token on characters" '[ "$(col 5)" = "$(col 13)" ]'
# Gutenberg's header and footer dropped: the same corpus as the bare book.
run transformer-train --text "$T/gutenberg.txt" $TINY -o "$T/g.safetensors"
expect_rc 0 "a Gutenberg book"
check "header and footer dropped" '[ "$(col 11)" = 99 ]'
check "same checkpoint as the bare book" 'same_checkpoint "$T/g.safetensors" "$T/c.safetensors"'
run transformer-train --text "$T/gutenberg.txt" --keep-gutenberg $TINY -o "$T/k.safetensors"
expect_rc 0 "--keep-gutenberg"
check "kept: a longer text" '[ "$(col 11)" -gt 99 ]'
run generate -m "$T/k.safetensors" --chars 5 --prefix "©"
expect_rc 0 "the licence's characters are in the kept vocabulary"
run generate -m "$T/g.safetensors" --chars 5 --prefix "©"
expect_fail "character '©'"
# Several books: joined, the last 10% of the whole validates.
run transformer-train --text "$T/book.txt" --text "$T/gutenberg.txt" $TINY -o "$T/two.safetensors"
expect_rc 0 "two books"
check "200 validation characters" '[ "$(col 11)" = 199 ]'
# A whole file held out; a BOM skipped and CRLF read as LF (36 characters).
run transformer-train --text "$T/book.txt" --val-text tests/data/text_bom_crlf.txt $TINY -o "$T/v.safetensors"
expect_rc 0 "--val-text with a BOM and CRLF"
check "35 validation tokens" '[ "$(col 11)" = 35 ]'
# Invalid UTF-8, in a book or the validation file: the file, line and byte.
run transformer-train --text tests/data/text_invalid.txt $TINY -o "$T/x.safetensors"
expect_fail "text_invalid.txt:3: invalid UTF-8 at byte 12"
run transformer-train --text "$T/book.txt" --val-text tests/data/text_invalid.txt $TINY -o "$T/x.safetensors"
expect_fail "text_invalid.txt:3: invalid UTF-8"
check "nothing written" '[ ! -e "$T/x.safetensors" ]'

# ---- generation and scoring -----------------------------------------------------
expect_chars "$T/c.safetensors" 100   # past the window (16): it slides
run generate -m "$T/c.safetensors" --chars 10 --prefix "Le petit"
expect_out "^Le petit"
head -c 300 "$T/book.txt" > "$T/some.txt"
run generate -m "$T/c.safetensors" --score "$T/some.txt"
expect_rc 0 "--score on a text model"
expect_out "^tokens	chars	total_loss	loss_per_token	loss_per_char$"
expect_out "^299	299	"
expect_err "^mean loss: [0-9.]+ nats/char over 299 characters"

# With one track (--batch-size 1) the trainer walks the validation text as
# --score does: the same loss, per token and per character.
tail -c 400 "$T/book.txt" > "$T/held.txt"
for t in "transformer-train --heads 2 --layers 1 --tokenizer bpe --vocab-size 60" "rnn-train"; do
    run $t --text "$T/book.txt" --val-text "$T/held.txt" --d-model 16 --window 16 --batch-size 1 \
        --steps 5 --eval-every 0 -o "$T/one.safetensors"
    expect_rc 0 "one track: ${t%% *}"
    want="$(col 5)	$(col 13)"
    run generate -m "$T/one.safetensors" --score "$T/held.txt"
    check "--score = the trainer's val_loss, val_loss_per_char (${t%% *}: $want)" \
        '[ "$(printf "%s\n" "$OUT" | sed -n 2p | cut -f4,5)" = "$want" ]'
done

# ---- BPE subwords --------------------------------------------------------------
run transformer-train --text "$T/book.txt" --tokenizer bpe --vocab-size 60 $TINY --steps 8 -o "$T/b.safetensors"
expect_rc 0 "--tokenizer bpe"
check "fewer tokens than characters" '[ "$(col 11)" -lt "$(col 12)" ] && [ "$(col 12)" -ge 97 ]'
check "merges in the checkpoint" 'head -c 20000 "$T/b.safetensors" | grep -q "\"tokenizer\":\"bpe\""'
check "vocab_size 60 in the config" 'head -c 20000 "$T/b.safetensors" | grep -q "vocab_size[^0-9]*60,"'
expect_chars "$T/b.safetensors" 77    # subwords, the last one cut
run generate -m "$T/b.safetensors" --chars 12 --prefix "Qu'il est"
expect_out "^Qu'il est"
run generate -m "$T/b.safetensors" --score "$T/some.txt"
expect_rc 0 "--score in subwords"
# (the first token is not predicted: fewer characters than 299 when it is a subword)
check "fewer tokens than characters" 'printf "%s\n" "$OUT" | awk -F"\t" "NR == 2 { exit !(\$2 <= 299 && \$2 > 290 && \$1 < \$2) }"'
run generate -m "$T/b.safetensors" -n 3
expect_fail "running text in subwords"
# Resume: the checkpoint's tokenizer, the same end as a straight run.
run transformer-train --text "$T/book.txt" --tokenizer bpe --vocab-size 60 $TINY --steps 12 -o "$T/bs.safetensors"
straight=$(col 3-5)
run transformer-train --text "$T/book.txt" --resume "$T/b.safetensors" --steps 12 -o "$T/br.safetensors"
expect_rc 0 "resume a subword model"
check "resumed = straight" '[ "$(col 3-5)" = "$straight" ]'
run transformer-train --text "$T/book.txt" --resume "$T/b.safetensors" --tokenizer bpe --steps 12 -o "$T/x.safetensors"
expect_usage
run transformer-train --data "$T/book.txt" --resume "$T/b.safetensors" --steps 12 -o "$T/x.safetensors"
expect_usage
expect_err "running-text model"
# The GRU takes the same flags.
run rnn-train --text "$T/book.txt" --tokenizer bpe --vocab-size 60 --d-model 16 --batch-size 4 --window 16 --steps 4 -o "$T/r.safetensors"
expect_rc 0 "rnn-train --tokenizer bpe"
expect_chars "$T/r.safetensors" 30

finish
