#!/usr/bin/env bash
# Install the Debian packages villes needs, if any is missing.
#   tools/install-deps.sh          build + test dependencies
#   tools/install-deps.sh --torch  also PyTorch (for tools/*.py and make bench)
#   tools/install-deps.sh --plots  also gnuplot and GNU parallel (tools/plot,
#                                  tools/sweep, make figures)
#   tools/install-deps.sh --mpi    also Open MPI (make MPI=1: training across
#                                  processes and machines with mpirun)
# Runs apt-get as root or through sudo; otherwise prints the command and fails.
set -eu
pkgs="build-essential pkg-config libopenblas-dev libcjson-dev libutf8proc-dev help2man libmicrohttpd-dev"   # help2man: make install's man pages; libmicrohttpd: generate --serve
[ "${1:-}" = "--torch" ] && pkgs="$pkgs python3-torch python3-numpy"
[ "${1:-}" = "--fuzz" ] && pkgs="$pkgs clang"
[ "${1:-}" = "--plots" ] && pkgs="$pkgs gnuplot-nox parallel"
[ "${1:-}" = "--mpi" ] && pkgs="$pkgs libopenmpi-dev openmpi-bin"

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -eq 0 ]; then
    sh -c "$cmd"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo sh -c "$cmd"
else
    echo "install-deps: missing packages:$missing" >&2
    echo "install-deps: run as root: $cmd" >&2
    exit 1
fi
