#!/usr/bin/env bash
# manpage.sh PROGRAM OUT - write the man page of PROGRAM (a built binary) to
# OUT with help2man, from its --help and --version, so that it never drifts
# from the program.  The one-line NAME description is the program's row in
# README.md's table of programs ("| `prog` | job |").
set -euo pipefail
cd "$(dirname "$0")/.."
prog=$1 out=$2
name=$(basename "$prog")
desc=$(sed -nE "s/^\| \`$name\` \| (.*) \|$/\1/p" README.md | head -1 | tr -d '`' |
       sed -E 's/ \([^)]*\)//g; s/[;,] .*//')
[ -n "$desc" ] || desc=$("$prog" --help | grep -vE '^( *or:|Usage:|$)' | head -1)
mkdir -p "$(dirname "$out")"
printf '[SEE ALSO]\nvilles(7); the README of villes\n' >"$out.see"
help2man --no-info --section=1 --name="$desc" --source=villes --manual="villes manual" \
    --include="$out.see" "$prog" >"$out.tmp"
rm -f "$out.see"
mv "$out.tmp" "$out"
