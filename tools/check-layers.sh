#!/usr/bin/env bash
# check-layers.sh - the include arrows of the tree run one way only:
#   src/core <- src/models <- src/app <- src/cmd
# Each floor's files may include (with "...") only headers beside them or in
# the public include directories of their floor and the floors below; no
# include path climbs with "..".  The build enforces the same through each
# floor's -I flags; this check also names the offending line, and that every
# program stays small (flag parsing plus calls: at most MAX_CMD_LINES lines).
# Prints one line per problem and "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
MAX_CMD_LINES=${MAX_CMD_LINES:-200}
passed=0 failed=0

allowed() {   # allowed FLOOR: the include directories a floor may use
    case $1 in
    core)   echo "include/core" ;;
    models) echo "include/core include/models" ;;
    app)    echo "include/core include/models include/app" ;;
    cmd)    echo "include/core include/models include/app" ;;
    esac
}

check_file() {   # check_file FLOOR FILE
    local floor=$1 file=$2 dir ok=1 h d found
    dir=$(dirname "$file")
    while IFS= read -r h; do
        case $h in
        */*) echo "layers: $file includes \"$h\": no paths in includes"; ok=0; continue ;;
        esac
        found=
        for d in "$dir" $(allowed "$floor"); do
            [ -e "$d/$h" ] && found=$d && break
        done
        if [ -z "$found" ]; then
            echo "layers: $file includes \"$h\", which is not in its floor ($floor) or below"
            ok=0
        fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
    if [ $ok = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

for floor in core models app cmd; do
    for f in src/$floor/*.[ch] $( [ "$floor" = cmd ] || ls include/$floor/*.h 2>/dev/null); do
        [ -e "$f" ] || continue
        check_file "$floor" "$f"
    done
done
for f in src/cmd/*.c; do
    n=$(wc -l < "$f")
    if [ "$n" -le "$MAX_CMD_LINES" ]; then passed=$((passed + 1))
    else echo "layers: $f has $n lines (a program is flag parsing plus calls: at most $MAX_CMD_LINES)"; failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
