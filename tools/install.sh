#!/usr/bin/env bash
# install.sh - `make install` and `make uninstall`.
#
#   tools/install.sh install     copy what `make` built into $DESTDIR$PREFIX
#   tools/install.sh uninstall   remove every file a previous install copied
#
# Environment (the Makefile passes them): PREFIX (/usr/local), DESTDIR
# (empty), BIN (bin), BUILD (build), MAN (yes; no without help2man).  What goes where, under PREFIX:
#
#   bin/PROG                                  every program of $BIN
#   share/villes/weights/*.safetensors        the default weights (found there
#                                             by the installed programs: cli.h)
#   share/man/man1/PROG.1, man7/villes.7      $BUILD/man (help2man) + doc/villes.7
#   share/bash-completion/completions/PROG    $BUILD/completion (tools/completion.sh)
#   include/villes/{core,models,app}/*.h      the public headers
#   lib/villes/lib{app,models,core}.a         the three archives
#   lib/pkgconfig/villes.pc                   pkg-config --cflags --libs villes
#   share/villes/install-manifest             every path above, for uninstall
#
# The manifest lists the files as installed (without DESTDIR), so that
# uninstall removes exactly them, then the directories of villes' own
# (share/villes, include/villes, lib/villes) when they are left empty.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BIN=${BIN:-bin}
BUILD=${BUILD:-build}
MAN=${MAN:-yes}   # no: help2man is missing, no man pages in man1
MANIFEST=$PREFIX/share/villes/install-manifest
OWN_DIRS="share/villes/weights share/villes include/villes/core include/villes/models
          include/villes/app include/villes lib/villes"

die() { echo "install: $*" >&2; exit 1; }

# put MODE SRC DST: install SRC as $DESTDIR$DST and record DST.
put() {
    install -D -m "$1" "$2" "$DESTDIR$3"
    printf '%s\n' "$3" >>"$LIST"
}

pc_file() {
    cat <<EOF
prefix=$PREFIX
includedir=\${prefix}/include/villes
libdir=\${prefix}/lib/villes

Name: villes
Description: character-level language models of French commune names (engine, models, program support)
Version: $("$BIN/generate" --version | awk '{print $2}')
Requires: openblas libcjson libutf8proc
Cflags: -I\${includedir}/core -I\${includedir}/models -I\${includedir}/app
Libs: -L\${libdir} -lapp -lmodels -lcore -lm -lpthread
EOF
}

do_install() {
    local progs=() p f
    for f in src/cmd/*.c; do p=$(basename "$f" .c); progs+=("$p"); done
    for p in "${progs[@]}"; do [ -x "$BIN/$p" ] || die "$BIN/$p is missing: run make first"; done
    LIST=$(mktemp)
    trap 'rm -f "$LIST" "$LIST.pc"' EXIT
    for p in "${progs[@]}"; do
        put 755 "$BIN/$p" "$PREFIX/bin/$p"
        put 644 "$BUILD/completion/$p" "$PREFIX/share/bash-completion/completions/$p"
        if [ "$MAN" = yes ]; then put 644 "$BUILD/man/$p.1" "$PREFIX/share/man/man1/$p.1"; fi
    done
    put 644 doc/villes.7 "$PREFIX/share/man/man7/villes.7"
    for f in weights/*.safetensors; do
        [ -e "$f" ] && put 644 "$f" "$PREFIX/share/villes/weights/$(basename "$f")"
    done
    for f in include/*/*.h; do put 644 "$f" "$PREFIX/include/villes/${f#include/}"; done
    for f in libapp libmodels libcore; do put 644 "$BUILD/$f.a" "$PREFIX/lib/villes/$f.a"; done
    pc_file >"$LIST.pc"
    put 644 "$LIST.pc" "$PREFIX/lib/pkgconfig/villes.pc"
    printf '%s\n' "$MANIFEST" >>"$LIST"
    install -D -m 644 "$LIST" "$DESTDIR$MANIFEST"
    echo "install: $(wc -l <"$LIST") files under $DESTDIR$PREFIX (list: $DESTDIR$MANIFEST)"
}

do_uninstall() {
    [ -f "$DESTDIR$MANIFEST" ] || die "nothing to uninstall: $DESTDIR$MANIFEST is missing"
    local n=0 f d
    while IFS= read -r f; do
        case $f in "$PREFIX"/*) ;; *) die "manifest entry outside $PREFIX: $f" ;; esac
        if [ -e "$DESTDIR$f" ] || [ -L "$DESTDIR$f" ]; then rm -f "$DESTDIR$f"; n=$((n + 1)); fi
    done <"$DESTDIR$MANIFEST"
    for d in $OWN_DIRS; do rmdir "$DESTDIR$PREFIX/$d" 2>/dev/null || true; done
    echo "uninstall: $n files removed from $DESTDIR$PREFIX"
}

case ${1:-} in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) echo "usage: tools/install.sh install|uninstall" >&2; exit 2 ;;
esac
