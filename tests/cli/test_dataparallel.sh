#!/usr/bin/env bash
# Data-parallel training (--threads N, and mpirun -np 2 when the trainers
# were built with make MPI=1): the same curve as one thread / one process,
# --resume bit-exact.  The MPI part is skipped, with a message, when no MPI
# build (make MPI=1: build-mpi/bin) or no mpirun is found.
. "$(dirname "$0")/lib.sh"

head -400 data/villes.txt > "$T/names.txt"
sed -n 401,440p data/villes.txt > "$T/val.txt"
DATA="--data $T/names.txt --val-data $T/val.txt"
TINY="$DATA --d-model 16 --heads 2 --layers 1 --batch-size 16 --eval-every 10 --seed 4"

# close A B TOL: the numbers differ by at most TOL
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; exit !(d <= t && -d <= t) }'; }
# col NAME: the summary column NAME of $OUT
col() { printf '%s\n' "$OUT" | awk -F'\t' -v n="$1" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i } NR == 2 { print $c[n] }'; }

run transformer-train --help
expect_out "--threads N +N >= 2: split every batch"

run transformer-train $TINY --steps 40 --threads 1 -o "$T/t1.safetensors"
expect_rc 0 "one thread"
v1=$(col val_loss); l1=$(col train_loss)
run transformer-train $TINY --steps 40 --threads 2 -o "$T/t2.safetensors"
expect_rc 0 "two threads"
check "two threads: the val_loss of one ($v1 vs $(col val_loss))" "close $v1 $(col val_loss) 1e-5"
check "two threads: the train_loss of one" "close $l1 $(col train_loss) 1e-5"

# --resume on 2 threads (with dropout) ends where the straight run ends
run transformer-train $TINY --dropout 0.1 --steps 40 --threads 2 -o "$T/straight.safetensors"
expect_rc 0
run transformer-train $TINY --dropout 0.1 --steps 20 --threads 2 -o "$T/half.safetensors"
run transformer-train $DATA --steps 40 --threads 2 --resume "$T/half.safetensors" -o "$T/half.safetensors"
expect_rc 0 "resume on 2 threads"
check "2 threads: --resume is bit-exact" "same_checkpoint '$T/straight.safetensors' '$T/half.safetensors'"

# ---- MPI --------------------------------------------------------------------
MPIBIN=
if "$BIN/transformer-train" --help 2>/dev/null | grep -q "Built with MPI"; then MPIBIN=$BIN
elif [ -x build-mpi/bin/transformer-train ] &&
     build-mpi/bin/transformer-train --help 2>/dev/null | grep -q "Built with MPI"; then MPIBIN=build-mpi/bin
fi
if [ -z "$MPIBIN" ] || ! command -v mpirun >/dev/null; then
    echo "test_dataparallel: MPI part skipped: ${MPIBIN:+no mpirun}${MPIBIN:-no trainer built with MPI (make MPI=1)}" >&2
    finish; exit
fi
# root in a container: Open MPI wants to be told
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() {   # mpi ARGS...: mpirun -np 2 transformer-train ARGS (sets OUT, ERR, RC)
    LAST="mpirun -np 2 transformer-train $*"
    mpirun --oversubscribe -np 2 "$MPIBIN/transformer-train" "$@" >"$T/out" 2>"$T/err" </dev/null; RC=$?
    OUT=$(cat "$T/out"); ERR=$(cat "$T/err")
}
BIN=$MPIBIN run transformer-train $TINY --steps 50 --log "$T/one.log" -o "$T/one.safetensors"
expect_rc 0 "one process"
mpi $TINY --steps 50 --log "$T/two.log" -o "$T/two.safetensors"
expect_rc 0 "two processes"
check "two processes: one summary (process 0's)" "[ \$(printf '%s\n' \"\$OUT\" | grep -c '^transformer') -eq 1 ]"
check "two processes: the loss curve of one, to 1e-4" \
    "paste '$T/one.log' '$T/two.log' | awk -F'\t' 'NR > 1 { for (i = 2; i <= 3; i++) { d = \$i - \$(i + 5); if (d > 1e-4 || -d > 1e-4) bad = 1 } } END { exit bad || NR != 6 }'"
mpi $TINY --steps 25 -o "$T/mhalf.safetensors"
mpi $DATA --steps 50 --resume "$T/mhalf.safetensors" -o "$T/mhalf.safetensors"
expect_rc 0 "two processes, resumed"
check "two processes: --resume is bit-exact" "same_checkpoint '$T/two.safetensors' '$T/mhalf.safetensors'"
finish
