#!/usr/bin/env bash
# Models trained in PyTorch and converted by tools/import-pytorch.py: villes
# scores names under them with PyTorch's loss (tests/data/fixtures/
# import_expected.tsv, written by tools/make-fixtures.py).  When PyTorch is
# installed, the converter is also run and must reproduce the committed files.
. "$(dirname "$0")/lib.sh"
F=tests/data/fixtures

expected_loss() { awk -F'\t' -v m="$1" '$1 == m { print $6 }' "$F/import_expected.tsv"; }
mean_loss() { printf '%s\n' "$ERR" | sed -n 's/^mean loss: \([0-9.]*\) nats\/char.*/\1/p'; }
close_to() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "" && d < 1e-5 && d > -1e-5) }'; }

for kind in transformer gru mamba; do
    run generate -m "$F/import_$kind.safetensors" --score "$F/import_names.txt"
    expect_rc 0 "score under the imported $kind"
    check "imported $kind: villes loss $(mean_loss) = PyTorch $(expected_loss $kind)" \
        'close_to "$(mean_loss)" "$(expected_loss $kind)"'
    run generate -m "$F/import_$kind.safetensors" -n 3 --seed 1
    expect_rc 0 "generate from the imported $kind"
done

# Every explore subcommand and steer on the imported Transformer and SAE.
M=(-m "$F/import_transformer.safetensors") S=(--sae "$F/import_sae.safetensors")
D=(--data "$F/import_names.txt")
explore_imported() {   # explore_imported HEADER-REGEX ARGS...
    local header=$1; shift
    run explore "$@" --format tsv
    expect_rc 0 "explore $1 on the imported model"
    expect_out "$header"
}
explore_imported '^feature	rank	name	position' features --top 2 --id 0 "${M[@]}" "${S[@]}" "${D[@]}"
explore_imported '^neuron	rank	name	position' neurons --top 2 --id 0 "${M[@]}" "${D[@]}"
explore_imported '^feature	active	frequency' freq "${M[@]}" "${S[@]}" "${D[@]}"
explore_imported '^rank	token	logit' logits --id 1 "${M[@]}" "${S[@]}"
explore_imported '^token	x	y' embeddings "${M[@]}"
explore_imported '^layer	position	input	next' lens paris "${M[@]}"
explore_imported '^part	id	activation	dla' attribute paris --pos 2 "${M[@]}" "${S[@]}"
explore_imported '^l0	explained_var' sae-stats "${M[@]}" "${S[@]}" "${D[@]}"
run generate "${M[@]}" -n 5 --seed 4; GEN=$OUT
run steer "${M[@]}" "${S[@]}" -n 5 --seed 4
expect_rc 0 "steer on the imported model"
check "steer without intervention = generate on the imported model" '[ "$OUT" = "$GEN" ]'
run steer "${M[@]}" "${S[@]}" -n 5 --seed 4 --clamp 58=5
expect_rc 0 "steer --clamp on the imported model"
run steer "${M[@]}" "${S[@]}" -n 5 --sweep 58=0:5:5 --match a "${D[@]}"
expect_rc 0 "steer --sweep on the imported model"
check "two values swept" '[ "$(printf "%s\n" "$OUT" | wc -l)" -eq 3 ]'
explore_imported '^name	activation	position	loss_per_char' synth --id 58 -n 2 --beam 4 "${M[@]}" "${S[@]}" "${D[@]}"
# sae-train's default (TopK 16) on the imported Transformer
run sae-train "${M[@]}" "${D[@]}" --steps 20 --eval-every 0 -o "$T/default-sae.safetensors"
expect_rc 0 "sae-train's default on the imported model"
check "L0 at most 16" 'printf "%s\n" "$OUT" | awk -F"\t" "NR == 1 { for (i = 1; i <= NF; i++) if (\$i == \"l0\") k = i } NR == 2 { exit !(k && \$k > 0 && \$k <= 16) }"'

if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    for kind in transformer gru mamba; do
        heads=(); [ "$kind" = transformer ] && heads=(--heads 4)
        /usr/bin/python3 tools/import-pytorch.py "$F/import_$kind.pth" --data data/villes.txt \
            -o "$T/$kind.safetensors" "${heads[@]}" 2>"$T/err"; RC=$?; LAST="import-pytorch.py $kind"
        expect_rc 0 "convert the $kind state_dict"
        check "converted $kind equals the committed file" 'cmp -s "$T/$kind.safetensors" "$F/import_$kind.safetensors"'
    done
    /usr/bin/python3 tools/import-pytorch.py "$F/import_sae.pth" --kind sae \
        --model "$F/import_transformer.safetensors" -o "$T/sae.safetensors" 2>"$T/err"; RC=$?
    expect_rc 0 "convert the SAE state_dict"
    check "converted SAE equals the committed file" 'cmp -s "$T/sae.safetensors" "$F/import_sae.safetensors"'
fi
finish
