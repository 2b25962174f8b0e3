#!/usr/bin/env bash
# test_install.sh - make install into a temporary DESTDIR with PREFIX=/usr:
# the installed generate finds its weights, the man pages read, the bash
# completion completes a flag, a C program builds with pkg-config, and make
# uninstall removes every file installed.  Without help2man, install says
# so and installs no man1 page.
. tests/cli/lib.sh
BUILD=${BUILD:-build}
D="$T/dest"
unset MAKEFLAGS MFLAGS MAKELEVEL
minstall() {   # minstall TARGET DESTDIR [VAR=VALUE...]: make TARGET, its output in $OUT
    local target=$1 dest=$2; shift 2
    LAST="make $target DESTDIR=$dest PREFIX=/usr $*"
    OUT=$(make --no-print-directory "$target" DESTDIR="$dest" PREFIX=/usr BIN="$BIN" BUILD="$BUILD" "$@" 2>&1)
    RC=$?; ERR=$OUT
}

minstall install "$D"
expect_rc 0 "make install"
expect_out "^install: [0-9]+ files under "
for p in src/cmd/*.c; do
    p=$(basename "$p" .c)
    check "installed: $p" '[ -x "$D/usr/bin/$p" ]'
    check "completion: $p" '[ -s "$D/usr/share/bash-completion/completions/$p" ]'
    if [ -n "$(command -v help2man)" ]; then check "man page: $p" '[ -s "$D/usr/share/man/man1/$p.1" ]'; fi
done
check "weights in share/villes/weights" '[ -s "$D/usr/share/villes/weights/mix.safetensors" ]'
check "headers" '[ -s "$D/usr/include/villes/core/checkpoint.h" ] && [ -s "$D/usr/include/villes/models/kinds.h" ]'
check "archives" '[ -s "$D/usr/lib/villes/libcore.a" ] && [ -s "$D/usr/lib/villes/libapp.a" ]'

# ---- the installed generate finds its weights, from anywhere
(cd "$T" && "$D/usr/bin/generate" -n 3 --seed 1 >"$T/out" 2>"$T/err"); RC=$?
OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); LAST="installed generate -n 3 (in $T)"
expect_rc 0 "installed generate runs"
check "installed generate: 3 names" '[ "$(printf "%s\n" "$OUT" | grep -c .)" -eq 3 ]'
# VILLES_WEIGHTS overrides: an empty directory, so the error names it
mkdir -p "$T/empty"
VILLES_WEIGHTS="$T/empty" "$D/usr/bin/generate" -n 1 >"$T/out" 2>"$T/err"; RC=$?
OUT=$(cat "$T/out"); ERR=$(cat "$T/err"); LAST="VILLES_WEIGHTS=empty generate"
expect_fail "$T/empty/mix.safetensors"

# ---- man pages
if command -v man >/dev/null && command -v help2man >/dev/null; then
    OUT=$(MANWIDTH=80 man -l "$D/usr/share/man/man1/generate.1" 2>/dev/null); RC=$?; LAST="man -l generate.1"
    expect_rc 0 "man -l generate.1"
    expect_out "^NAME"
    expect_out "--temperature"
    OUT=$(MANWIDTH=80 man -l "$D/usr/share/man/man7/villes.7" 2>/dev/null); RC=$?; LAST="man -l villes.7"
    expect_out "villes - small Unix programs"
else
    echo "skip: man or help2man missing"
fi

# ---- bash completion: a flag, a file after -m, explore's commands
complete_words() {   # complete_words PROG WORD...: COMPREPLY after PROG WORD...
    local prog=$1; shift
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); "_villes_${1//-/_}"; printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$D/usr/share/bash-completion/completions/$prog" "$prog" "$@" 2>&1
}
OUT=$(complete_words generate --temp); RC=$?; LAST="complete generate --temp"
check "completion: generate --temp -> --temperature" '[ "$OUT" = "--temperature" ]'
OUT=$(cd "$D/usr/share/villes/weights" && complete_words generate -m mi); LAST="complete generate -m mi"
check "completion: generate -m mi -> mix.safetensors" '[ "$OUT" = "mix.safetensors" ]'
OUT=$(complete_words explore freq --su); LAST="complete explore freq --su"
check "completion: explore freq --su -> --summary" '[ "$OUT" = "--summary" ]'
OUT=$(complete_words explore fea); LAST="complete explore fea"
check "completion: explore fea -> features" '[ "$OUT" = "features" ]'
OUT=$(complete_words transformer-train --d-); LAST="complete transformer-train --d-"
check "completion: transformer-train --d- -> --d-model" '[ "$OUT" = "--d-model" ]'

# ---- a C program against villes.pc (the installed copy, its prefix moved to $D/usr)
mkdir -p "$T/pc"
sed "s|^prefix=.*|prefix=$D/usr|" "$D/usr/lib/pkgconfig/villes.pc" >"$T/pc/villes.pc"
cat >"$T/prog.c" <<'C'
#include <stdio.h>
#include "kinds.h"
int main(int argc, char **argv)
{
    mdl m;
    if (argc < 2 || mdl_load(&m, argv[1])) { fprintf(stderr, "%s\n", err_msg()); return 1; }
    printf("%s %d\n", m.kind->name, mdl_vocab_size(&m));
    mdl_free(&m);
    return 0;
}
C
flags=$(PKG_CONFIG_PATH="$T/pc" pkg-config --cflags --libs villes 2>&1); RC=$?; OUT=$flags; LAST="pkg-config villes"
expect_rc 0 "pkg-config --cflags --libs villes"
san=   # archives built by make check-asan need the sanitizers' run-time
nm "$D/usr/lib/villes/libcore.a" 2>/dev/null | grep -q __asan_ && san="-fsanitize=address,undefined"
OUT=$(${CC:-cc} -std=c11 $san "$T/prog.c" $flags -o "$T/prog" 2>&1); RC=$?; LAST="cc prog.c \$(pkg-config ...)"
expect_rc 0 "a C program builds against villes.pc"
OUT=$("$T/prog" "$D/usr/share/villes/weights/transformer.safetensors" 2>&1); RC=$?; LAST="prog transformer.safetensors"
expect_out "^transformer [0-9]+$"

# ---- uninstall removes every file installed
minstall uninstall "$D"
expect_rc 0 "make uninstall"
OUT=$(find "$D" -type f); LAST="find $D -type f"
check "uninstall: no file left" '[ -z "$OUT" ]'
check "uninstall: villes' own directories gone" '[ ! -e "$D/usr/share/villes" ] && [ ! -e "$D/usr/include/villes" ]'
minstall uninstall "$D"
check "uninstall twice: nothing to uninstall" '[ "$RC" -ne 0 ]'
expect_out "nothing to uninstall"

# ---- without help2man: said, and no man1 page
minstall install "$T/d2" HELP2MAN=
expect_rc 0 "install without help2man"
expect_out "help2man not found"
check "no man1 without help2man" '[ ! -e "$T/d2/usr/share/man/man1" ] && [ -s "$T/d2/usr/share/man/man7/villes.7" ]'
finish
