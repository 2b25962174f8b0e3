#!/usr/bin/env bash
# generate --serve: the page, the JSON API (good and bad requests, bounds,
# path traversal refused), explore's views, 100 concurrent requests all
# answered, and (with chromium) the page loaded headless.  Skipped when
# generate was built without libmicrohttpd or curl is missing.
. "$(dirname "$0")/lib.sh"

if ! command -v curl >/dev/null; then echo "skipped: no curl"; finish; exit; fi
run generate --serve 0 -m /nonexistent/x.safetensors
if printf '%s' "$ERR" | grep -q "not built in"; then
    expect_fail "not built in"
    echo "skipped: generate built without libmicrohttpd"
    finish; exit
fi
expect_fail "no model 'x'"
run generate --serve 1.2.3:80
expect_fail "not an IPv4 address"
run generate --serve 70000
expect_fail "PORT in 0..65535"
run generate --serve 0 --score x
expect_usage

# Tiny models with the vocabulary of data/villes.txt, which explore features reads.
mkdir -p "$T/w"
"$BIN/transformer-train" --data data/villes.txt --d-model 16 --heads 2 --layers 1 --batch-size 16 \
    --steps 30 --eval-every 0 --lr 3e-3 -o "$T/w/transformer.safetensors" >/dev/null 2>&1
"$BIN/ngram" -n 3 --data data/villes.txt -o "$T/w/ng.safetensors" >/dev/null
"$BIN/sae-train" -m "$T/w/transformer.safetensors" --data tests/data/train_villes400.txt \
    --features 16 --steps 20 --eval-every 0 -o "$T/w/sae.safetensors" >/dev/null 2>&1
echo secret > "$T/secret.txt"

"$BIN/generate" --serve 0 -m "$T/w/ng.safetensors" 2>"$T/serve.err" &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 50); do grep -q serving "$T/serve.err" && break; sleep 0.1; done
PORT=$(sed -n 's|.*127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$T/serve.err")
check "serving on a free loopback port" '[ -n "$PORT" ]'
U="http://127.0.0.1:$PORT"

get() {   # get PATH: $OUT the body, $RC the HTTP status
    LAST="GET $1"
    OUT=$(curl -s --path-as-is -w '\n%{http_code}' "$U$1"); RC=${OUT##*$'\n'}; OUT=${OUT%$'\n'*}
}
get /
check "the page: 200" '[ "$RC" = 200 ]'
expect_out "<title>villes</title>"
check "the page needs no network" '! printf "%s" "$OUT" | grep -Eq "(src|href)=.https?:"'
get /api/models
check "models: 200" '[ "$RC" = 200 ]'
expect_out '"models":\[.*"ng".*\]'
expect_out '"default":"ng"'
check "the SAE is not offered" '! printf "%s" "$OUT" | grep -q "\"sae\""'

get "/api/generate?count=7&seed=3&prefix=sa&temperature=0.9"
check "generate: 200" '[ "$RC" = 200 ]'
names=$(printf '%s' "$OUT" | sed 's/.*"names":\[//; s/\].*//; s/","/\n/g; s/"//g')
check "generate: 7 names" '[ "$(printf "%s\n" "$names" | wc -l)" -eq 7 ]'
want=$("$BIN/generate" -m "$T/w/ng.safetensors" -n 7 --seed 3 --prefix sa --temperature 0.9)
check "generate: the names of generate, seed for seed" '[ "$names" = "$want" ]'
get "/api/generate?model=transformer&count=3&prefix=%C3%A9"
check "generate from another model, an escaped prefix" '[ "$RC" = 200 ]'
expect_out '"names":\["é'

get "/api/score?model=transformer&name=saint-martin"
check "score: 200" '[ "$RC" = 200 ]'
expect_out '"letters":\[\{"char":"s","nll":[0-9.e-]+,"p":'
expect_out '"char":"<EOS>"'
total=$(printf '%s' "$OUT" | sed 's/.*"total_loss":\([0-9.e-]*\).*/\1/')
printf 'saint-martin\n' > "$T/one.txt"
ref=$("$BIN/generate" -m "$T/w/transformer.safetensors" --score "$T/one.txt" 2>/dev/null | awk 'NR == 2 { print $3 }')
check "score: generate --score's loss" 'awk -v a="$total" -v b="$ref" "BEGIN { exit !((a - b) ^ 2 < 1e-10) }"'

# Bad requests: a 4xx status and one JSON error naming the problem.
bad() {   # bad STATUS PATH REGEX
    local want=$1
    get "$2"
    check "$2: $want" '[ "$RC" = "$want" ]'
    expect_out "^\{\"error\":\".*$3"
}
bad 400 "/api/generate?count=0" "count"
bad 400 "/api/generate?count=201" "count"
bad 400 "/api/generate?count=abc" "count"
bad 400 "/api/generate?temperature=-1" "temperature"
bad 400 "/api/generate?frobnicate=1" "unknown parameter"
bad 400 "/api/generate?count=1&count=2" "twice"
bad 400 "/api/generate?prefix=%ZZ" "prefix"
bad 400 "/api/generate?prefix=%E2%82%AC" "not in the vocabulary"
bad 400 "/api/generate?prefix=$(printf 'a%.0s' $(seq 65))" "64 characters"
bad 400 "/api/score?name=" "name"
bad 400 "/api/score?name=a%FFb" "UTF-8"
bad 400 "/api/score?model=transformer&name=$(printf 'a%.0s' $(seq 60))" "characters"
bad 404 "/nothing" "no such page"
bad 404 "/api/generate?model=nope" "no model"
bad 400 "/api/generate?model=sae" "sae"
get "/api/generate?count=1&x=$(printf 'x%.0s' $(seq 3000))"
check "a URI too long: 414" '[ "$RC" = 414 ]'
LAST="POST /api/generate"
RC=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d 'count=3' "$U/api/generate")
check "POST: 405" '[ "$RC" = 405 ]'

# No file outside the weights directory, whatever the spelling.
for path in "/api/generate?model=../secret" "/api/generate?model=..%2Fsecret" \
            "/api/generate?model=%2Fetc%2Fpasswd" "/api/score?model=../../etc/passwd&name=ab" \
            "/../secret.txt" "/api/../../secret.txt" "/%2e%2e/secret.txt"; do
    get "$path"
    check "$path is refused" '[ "$RC" = 400 ] || [ "$RC" = 404 ]'
    check "$path shows nothing outside" '! printf "%s" "$OUT" | grep -q "secret$\|root:"'
done

get "/explore/attribute?name=saint-martin&pos=3"
check "attribute: 200" '[ "$RC" = 200 ]'
expect_out "<html"
get "/explore/attribute?name=--help&pos=1"
check "a name that looks like a flag is a name" '[ "$RC" != 200 ] || ! printf "%s" "$OUT" | grep -q "^Usage"'
get "/explore/features"
check "features: 200" '[ "$RC" = 200 ]'
expect_out "<html"

# 100 requests at once: every one answered, nothing lost.
LAST="100 concurrent requests"
seq 100 | xargs -P 100 -I{} curl -s -o "$T/c{}.json" -w '%{http_code}\n' \
    "$U/api/generate?count=2&seed={}" > "$T/codes" 2>/dev/null
check "100 concurrent requests: 100 times 200" '[ "$(grep -c "^200$" "$T/codes")" -eq 100 ]'
check "100 concurrent requests: 100 answers of 2 names" \
    '[ "$(grep -l "\"names\":\[\"[^\"]*\",\"[^\"]*\"\]" "$T"/c*.json | wc -l)" -eq 100 ]'
a=$(cat "$T/c42.json"); get "/api/generate?count=2&seed=42"
check "an answer under load is the answer alone" '[ "$OUT" = "$a" ]'

# The page in a headless browser: no console error, names listed, a screenshot.
CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROME" ]; then
    LAST="chromium --headless $U/"
    timeout 60 "$CHROME" --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 \
        --virtual-time-budget=5000 --window-size=1200,900 --screenshot="$T/page.png" "$U/" \
        >/dev/null 2>"$T/chrome.err"
    check "the page's screenshot is 1200x900" \
        '[ "$(od -An -tu1 -j16 -N8 "$T/page.png" | tr -s " " | sed "s/^ //")" = "0 0 4 176 0 0 3 132" ]'
    check "no console error" '! grep -Ei "CONSOLE.*(error|uncaught)|Uncaught" "$T/chrome.err"'
    timeout 60 "$CHROME" --headless --no-sandbox --disable-gpu --virtual-time-budget=5000 \
        --dump-dom "$U/" >"$T/dom.html" 2>/dev/null
    check "the page lists generated names" '[ "$(grep -o "<li>" "$T/dom.html" | wc -l)" -ge 10 ]'
    check "the page shades the letters of a name" 'grep -q "<span[^>]*style=\"background" "$T/dom.html"'
    [ -n "${KEEP_SCREENSHOT:-}" ] && cp "$T/page.png" "$KEEP_SCREENSHOT"
else
    echo "skipped: no chromium for the headless page load"
fi

kill $PID; wait $PID; RC=$?
check "SIGTERM stops the server cleanly" '[ "$RC" = 0 ]'
finish
