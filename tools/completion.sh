#!/usr/bin/env bash
# completion.sh PROGRAM OUT - write the bash completion of PROGRAM (a built
# binary) to OUT, from its --help, so that it never drifts from the flags.
#
# Read from --help: the option lines ("  -m, --model FILE   ..."): every
# long and short flag, and whether it takes a value (an upper-case word right
# after it, or --flag=WORD); a value named FILE, DIR, CHECKPOINT, MODEL or
# OUT completes file names, any other value nothing.  A "Commands:" section
# (explore) gives the words completed as the first argument, and the flags
# it names.
set -euo pipefail
prog=$1 out=$2
name=$(basename "$prog")
fn=_villes_$(printf '%s' "$name" | tr -c 'a-zA-Z0-9\n' _)
help=$("$prog" --help)

# One line per option: "FLAG KIND" with KIND none, file or value.
options=$(printf '%s\n' "$help" | sed -nE \
    's/^ +(-([a-zA-Z]), )?--([a-z][-a-z0-9]*)(( |=)([A-Z][-A-Z=]*))?( {2,}.*)?$/s=\2 l=\3 a=\6/p' |
    awk '{ s = substr($1, 3); l = substr($2, 3); a = substr($3, 3)
           kind = a == "" ? "none" : a ~ /^(FILE|DIR|CHECKPOINT|MODEL|OUT)$/ ? "file" : "value"
           if (s != "") print "-" s, kind
           print "--" l, kind }')
# flags named only in the Commands section (explore's --sort, --summary) count too
section_flags=$(printf '%s\n' "$help" | sed -n '/^Commands:/,/^$/p' | grep -oE -- '--[a-z][-a-z0-9]*' || true)
flags=$( (printf '%s\n' "$options" | awk '{print $1}'; printf '%s\n' "$section_flags") | grep . | sort -u |
        tr '\n' ' ')
file_flags=$(printf '%s\n' "$options" | awk '$2 == "file" {print $1}' | sort -u | tr '\n' '|')
file_flags=${file_flags:-_none_|}
value_flags=$(printf '%s\n' "$options" | awk '$2 == "value" {print $1}' | sort -u | tr '\n' '|')
value_flags=${value_flags:-_none_|}
commands=$(printf '%s\n' "$help" | sed -n '/^Commands:/,/^$/p' | sed -nE 's/^  ([a-z][-a-z]*)( .*)?$/\1/p' |
           tr '\n' ' ')
[ -n "$flags" ] || { echo "completion: no flags in $prog --help" >&2; exit 1; }

cat >"$out" <<EOF
# bash completion for $name (villes), generated from '$name --help' by tools/completion.sh
$fn()
{
    local cur=\${COMP_WORDS[COMP_CWORD]} prev=
    [ "\$COMP_CWORD" -gt 0 ] && prev=\${COMP_WORDS[COMP_CWORD-1]}
    case \$prev in
        ${file_flags%|}) compopt -o filenames 2>/dev/null; COMPREPLY=(\$(compgen -f -- "\$cur")); return ;;
        ${value_flags%|}) COMPREPLY=(); return ;;
    esac
    if [[ \$cur == -* ]]; then
        COMPREPLY=(\$(compgen -W "${flags% }" -- "\$cur"))
    elif [ "\$COMP_CWORD" -eq 1 ] && [ -n "${commands% }" ]; then
        COMPREPLY=(\$(compgen -W "${commands% }" -- "\$cur"))
    else
        compopt -o filenames 2>/dev/null; COMPREPLY=(\$(compgen -f -- "\$cur"))
    fi
}
complete -F $fn $name
EOF
