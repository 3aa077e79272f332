#!/usr/bin/env bash
# esm-embed end to end with the TINY random-weight model of tests/data/esm (fair-esm goldens):
# FASTA and graph inputs, both weight formats, --export, dedup, resume, long-sequence policies,
# unknown letters, the cross-cache check and repair.
# shellcheck source=tests/tools/lib.sh
source "$(dirname "$0")/lib.sh"

ESM="$DATA/esm"
TINY="$ESM/tiny"
NPYDIFF="$TESTBIN/npy-diff"
# the CPU engine here (a CUDA build on a GPU machine would pick the GPU); the CUDA engine below
emb() { esm-embed -j 2 --device cpu --weights "$TINY/model.safetensors" "$@"; }

# every exported NAME.npy that has a golden PREFIX/NAME.SUFFIX.npy agrees within TOL
compare_goldens() { # dir suffix tol
    local f n count=0
    for f in "$1"/*.npy; do
        n=$(basename "$f" .npy)
        [ -e "$TINY/$n.$2.npy" ] || continue
        "$NPYDIFF" "$f" "$TINY/$n.$2.npy" "$3" >/dev/null || fail "$n differs from its golden: $("$NPYDIFF" "$f" "$TINY/$n.$2.npy")"
        count=$((count + 1))
    done
    [ "$count" -gt 0 ] || fail "no golden compared"
}

test_fasta_embeddings_match_fair_esm() {
    assert_rc 0 emb --fasta "$ESM/sequences.fasta" -o e --dtype f32 --export x
    compare_goldens x last 1e-4
    assert_rc 0 cache-check e
    assert_contains "$OUT" "esm cache, sealed"
    # layer 1 (raw residual stream)
    assert_rc 0 emb --fasta "$ESM/sequences.fasta" -o e1 --dtype f32 --layer 1 --export x1
    compare_goldens x1 layer1 1e-4
}

test_both_weight_formats_give_identical_records() {
    assert_rc 0 emb --fasta "$ESM/sequences.fasta" -o a --export xa
    assert_rc 0 esm-embed -j 2 --device cpu --weights "$TINY/model.pt" --fasta "$ESM/sequences.fasta" -o b --export xb
    local f
    for f in xa/*.npy; do cmp -s "$f" "xb/$(basename "$f")" || fail "$(basename "$f") differs between .safetensors and .pt"; done
    assert_eq "$(cache-check --json a | grep -o '"records": [0-9]*')" "$(cache-check --json b | grep -o '"records": [0-9]*')" "record count"
}

test_fp16_storage_error_is_within_the_documented_bound() {
    assert_rc 0 emb --fasta "$ESM/sequences.fasta" -o h --export xh
    # docs/esm-embed.md: half an fp16 ulp; |x| < 4 here -> 2^-10 = 9.8e-4, plus fp32 noise
    compare_goldens xh last 1e-3
    local worst
    worst=$("$NPYDIFF" xh/2H7V_r.npy "$TINY/2H7V_r.last.npy" 1 | awk '{print $2}')
    awk -v w="$worst" 'BEGIN{exit !(w > 0)}' || fail "fp16 storage changed nothing (is it really fp16?)"
}

test_export_file_names_are_distinct_for_distinct_names() {
    printf '>a/b\nMKTAYIAK\n>a_b\nMKTAYIAQ\n>..\nMKTA\n>100%%\nMKTAY\n>dup\nMKVL\n>dup\nMKVL\n>twice\nMKVL\n>twice\nMKVA\n' >n.fasta
    assert_rc 0 emb --fasta n.fasta -o e --export x
    assert_eq "$(find x -name '*.npy' -printf '%f\n' | sort | tr '\n' ' ')" "%2E%2E.npy 100%25.npy a%2Fb.npy a_b.npy dup.npy twice.npy " "export files"
    assert_contains "$OUT" "two inputs are named 'twice' and have different sequences"
    assert_not_contains "$OUT" "named 'dup'"
    # the later 'twice' (MKVA) is the one kept
    printf '>ref\nMKVA\n' >ref.fasta
    assert_rc 0 emb --fasta ref.fasta -o e --export y
    "$NPYDIFF" x/twice.npy y/ref.npy 0 >/dev/null || fail "twice.npy is not the later sequence's"
    ! "$NPYDIFF" x/twice.npy x/dup.npy 0 >/dev/null || fail "twice.npy is the earlier sequence's"
}

test_identical_sequences_are_embedded_once_and_reruns_do_no_work() {
    { cat "$ESM/sequences.fasta"; sed 's/^>/>copy_/' "$ESM/sequences.fasta"; } > twice.fasta
    assert_rc 0 emb --fasta twice.fasta -o e --json
    assert_contains "$OUT" '"inputs": 22, "unique": 11, "cached": 0, "embedded": 11'
    assert_rc 0 emb --fasta twice.fasta -o e --json --export x
    assert_contains "$OUT" '"cached": 11, "embedded": 0'
    cmp -s x/1PPE_l.npy x/copy_1PPE_l.npy || fail "a duplicate's export differs"
    [ "$(find x -name '*.npy' | wc -l)" -eq 22 ] || fail "not one export per input"
}

test_graph_cache_input_and_cross_check() {
    graph-build -c "$ROOT/config/demo.yaml" --set "data.data_path=$DATA/db5-mini" \
        --set "data.data_file=$DATA/db5-mini/splits.csv" -o g -q || fail "graph-build"
    assert_rc 0 emb -g g -o e --json --export x
    assert_contains "$OUT" '"inputs": 8, "unique": 8'
    [ -e x/1HIA_r.npy ] || fail "ID_r export missing"
    [ -e x/1HIA_l.npy ] || fail "ID_l export missing"
    assert_rc 0 cache-check g e
    assert_contains "$OUT" "4 complexes, 4 with both embeddings right, 0 problems"
    # a new complex in the graph cache: the cross check names its two missing embeddings
    graph-build --receptor "$DATA/db5-mini/structures/1FC2_r_u.pdb.gz" \
        --ligand "$DATA/db5-mini/structures/1FC2_l_u.pdb.gz" --id NEW -o g -q || fail "graph-build pair"
    assert_rc 4 cache-check --json g e
    assert_contains "$OUT" '"key": "NEW:receptor", "check": "missing-embedding"'
    assert_contains "$OUT" '"key": "NEW:ligand", "check": "missing-embedding"'
    # the ESM cache records its inputs: --inputs finds the same two
    assert_rc 4 cache-check --inputs --json e
    assert_contains "$OUT" '"key": "NEW:receptor", "check": "missing"'
    assert_contains "$OUT" '"missing": 2'
    assert_rc 0 emb -g g -o e --json
    assert_contains "$OUT" '"embedded": 2'
    assert_rc 0 cache-check g e
}

test_damaged_embedding_is_dropped_by_repair_and_redone() {
    assert_rc 0 emb --fasta "$ESM/sequences.fasta" -o e --json
    local key
    key=$("$TESTBIN/cache-tamper" e flip @first 3000) || fail "tamper"
    assert_rc 4 cache-check --json e
    assert_contains "$OUT" "\"key\": \"$key\", \"check\": \"checksum\""
    assert_rc 1 cache-check --repair e
    assert_rc 0 emb --fasta "$ESM/sequences.fasta" -o e --json
    assert_contains "$OUT" '"cached": 10, "embedded": 1'
    assert_rc 0 cache-check e
}

# stop_then_complete N ESM-EMBED-COMMAND...: N random sequences embedded by the command (commits
# every ~1 MB), SIGTERM once the first batches are committed; what it reports embedded is
# committed, the cache unsealed; the CPU engine's rerun embeds exactly the rest and seals. The
# command is a program, not a shell function, so that $! is its own process. N: enough work after
# the first commits that the signal finds the run going (a GPU embeds the tiny model fast).
stop_then_complete() {
    local n=$1
    shift
    awk -v count="$n" 'BEGIN { srand(7); a = "ACDEFGHIKLMNPQRSTVWY"
                 for (i = 0; i < count; i++) { n = 60 + int(rand() * 120); s = ""
                     for (k = 0; k < n; k++) s = s substr(a, 1 + int(rand() * 20), 1)
                     printf ">s%d\n%s\n", i, s } }' > many.fasta
    "$@" --weights "$TINY/model.safetensors" --fasta many.fasta -o e --set cache.batch_mb=1 --json \
        >out.json 2>err.txt &
    local pid=$!
    signal_after_growth "$pid" e/data.mdb 1500000
    wait "$pid"
    local rc=$?
    OUT=$(cat out.json err.txt)
    [ "$rc" -eq 1 ] || fail "esm-embed exited $rc after SIGTERM, expected 1 (stopped): $(tail -2 err.txt)"
    assert_contains "$OUT" '"stopped": true'
    local n_done
    n_done=$(json_number embedded "$OUT")
    [ "$n_done" -gt 0 ] || fail "nothing embedded before the stop"
    [ "$n_done" -lt "$n" ] || fail "all $n embedded before the stop"
    assert_contains "$OUT" "stopped by a signal: the $n_done sequences embedded are committed"
    assert_contains "$OUT" "embed the other $((n - n_done))"
    assert_rc 4 cache-check --json e
    assert_contains "$OUT" '"check": "unsealed"'
    assert_eq "$(json_number records_ok "$OUT")" "$n_done" "records in the stopped cache"
    assert_eq "$(grep -c '"check"' <<<"$OUT")" 1 "problems besides unsealed"
    assert_rc 0 emb --fasta many.fasta -o e --json
    assert_contains "$OUT" "\"cached\": $n_done, \"embedded\": $((n - n_done)),"
    assert_rc 0 cache-check e
    assert_contains "$OUT" "sealed, $n records, $n ok, 0 problems"
}

test_sigterm_commits_what_is_embedded_and_a_rerun_completes() {
    stop_then_complete 4000 "$BIN/esm-embed" -j 2 --device cpu
}

test_long_sequence_policies() {
    # 1PXV_r is the long one of sequences.fasta (183 residues)
    awk '/^>1PXV_r/{p=1;print;next} /^>/{p=0} p' "$ESM/sequences.fasta" > long.fasta
    assert_rc 0 emb --fasta long.fasta -o w --dtype f32 --long window --max-length 64 --overlap 16 --export xw
    "$NPYDIFF" xw/1PXV_r.npy "$TINY/1PXV_r.window64-16.last.npy" 1e-4 >/dev/null || fail "window blend differs from the golden"
    assert_rc 0 emb --fasta long.fasta -o t --dtype f32 --long truncate --max-length 50 --export xt
    "$NPYDIFF" xt/1PXV_r.npy "$TINY/1PXV_r.trunc50.last.npy" 1e-4 >/dev/null || fail "truncation differs from the golden"
    assert_rc 1 emb --fasta "$ESM/sequences.fasta" -o r --long error --max-length 100 --json
    assert_contains "$OUT" '"refused": '
    assert_not_contains "$OUT" '"refused": 0'
    # the cache's params record the policy: whole and window caches have different keys
    assert_rc 0 emb --fasta long.fasta -o whole --json
    cache-check --json whole | grep -q '"records": 1,' || fail "whole policy cache"
}

test_unknown_letters_policy() {
    printf '>weird\nMKJVLA*\n' > weird.fasta
    assert_rc 0 emb --fasta weird.fasta -o e
    assert_contains "$OUT" "2 letters outside ESM's alphabet mapped to X"
    assert_rc 1 emb --fasta weird.fasta -o e2 --unknown error --json
    assert_contains "$OUT" '"refused": 1'
}

test_usage_and_config_errors() {
    assert_rc 2 esm-embed -o e
    assert_contains "$OUT" "give at least one input"
    assert_rc 2 esm-embed --fasta "$ESM/sequences.fasta" -o e
    assert_contains "$OUT" "no ESM-2 weights"
    assert_rc 2 emb --fasta "$ESM/sequences.fasta" -o e --dtype f8
    assert_rc 3 esm-embed --fasta "$ESM/sequences.fasta" -o e --weights nonexistent.safetensors
    assert_rc 3 esm-embed --fasta "$ESM/sequences.fasta" -o e --weights nonexistent.safetensors --json
    assert_contains "$OUT" '"status": "PPD_ERR_IO", "exit": 3}' # --json ends with the outcome
    assert_rc 3 emb --fasta "$ESM/sequences.fasta" -o e --mem-gb 0.01
    assert_contains "$OUT" "MiB"
    assert_rc 0 esm-embed --version
}

test_device_cuda_needs_cuda_and_a_gpu() {
    # bin/ is either a CPU-only build (refuses cuda) or a CUDA build on a machine without a GPU
    # here (says so); on a GPU machine it runs, and make test-gpu covers it
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then return 0; fi
    OUT=$(emb --fasta "$ESM/sequences.fasta" -o e --device cuda 2>&1)
    local rc=$?
    [ "$rc" -ne 0 ] || fail "--device cuda succeeded without a GPU"
    case "$OUT" in *"built without CUDA"* | *"no CUDA device"*) ;; *) fail "unclear refusal: $OUT" ;; esac
    assert_rc 2 emb --fasta "$ESM/sequences.fasta" -o e --device tpu
}

# The CUDA engine: PPD_EMU_BIN names a directory with a CUDA esm-embed. `make test` gives it the
# CPU emulation's (tests/emu, built wherever the CUDA headers are: the same kernels nvcc
# compiles); scripts/gpu-check.sh gives it the real CUDA build on a GPU. Checked against
# fair-esm's goldens like the CPU engine.
EMU_ESM=""
[ -n "$CUDA_BIN" ] && EMU_ESM="$CUDA_BIN/esm-embed"
if [ -n "$EMU_ESM" ] && [ -x "$EMU_ESM" ]; then
    emu_emb() { "$EMU_ESM" -j 2 --weights "$TINY/model.safetensors" --device cuda "$@"; }

    test_cuda_engine_matches_fair_esm() {
        assert_rc 0 emu_emb --fasta "$ESM/sequences.fasta" -o e --dtype f32 --export x --json
        assert_contains "$OUT" '"device": "cuda"'
        compare_goldens x last 1e-4
        assert_rc 0 cache-check e
        assert_rc 0 emu_emb --fasta "$ESM/sequences.fasta" -o e1 --dtype f32 --layer 1 --export x1
        compare_goldens x1 layer1 1e-4
        # small device batches (many batches, one arena): the same embeddings, up to fp32
        # rounding, since cuBLAS picks its GEMM kernels (and so the sums' order) by the batch's
        # token count on a GPU (identical on the emulation)
        assert_rc 0 emu_emb --fasta "$ESM/sequences.fasta" -o e2 --dtype f32 --export x2 --set device.budget_gb=0.0322 -v
        assert_contains "$OUT" "in 5 batches"
        local f d
        for f in x/*.npy; do
            d=$("$NPYDIFF" "$f" "x2/$(basename "$f")" 1e-5) || fail "$(basename "$f") depends on the device batch ($d)"
        done
    }

    test_cuda_engine_stopped_by_sigterm_commits_what_is_embedded() {
        stop_then_complete 12000 "$EMU_ESM" -j 2 --device cuda
    }

    test_cuda_engine_window_and_truncate_match_the_goldens() {
        awk '/^>1PXV_r/{p=1;print;next} /^>/{p=0} p' "$ESM/sequences.fasta" > long.fasta
        assert_rc 0 emu_emb --fasta long.fasta -o w --dtype f32 --long window --max-length 64 --overlap 16 --export xw
        "$NPYDIFF" xw/1PXV_r.npy "$TINY/1PXV_r.window64-16.last.npy" 1e-4 >/dev/null || fail "window blend differs from the golden"
        assert_rc 0 emu_emb --fasta long.fasta -o t --dtype f32 --long truncate --max-length 50 --export xt
        "$NPYDIFF" xt/1PXV_r.npy "$TINY/1PXV_r.trunc50.last.npy" 1e-4 >/dev/null || fail "truncation differs from the golden"
    }

    test_cuda_engine_reports_device_memory_and_refuses_a_small_budget() {
        assert_rc 0 emu_emb --fasta "$ESM/sequences.fasta" -o e --json
        local planned used
        planned=$(printf '%s' "$OUT" | grep -o '"device_planned_mb": [0-9.]*' | grep -o '[0-9.]*$')
        used=$(printf '%s' "$OUT" | grep -o '"device_used_mb": [0-9.]*' | grep -o '[0-9.]*$')
        awk -v p="$planned" -v u="$used" 'BEGIN { exit !(p > 0 && u <= p && u >= 0.95 * p) }' ||
            fail "device memory planned $planned MiB, used $used MiB"
        # the driver's own count of the arena against the plan, within 5% (exact on the
        # emulation); the stream's and cuBLAS handle's own are reported beside it (about 67 MiB
        # on an H200 with CUDA 13, 0 on the emulation), outside the plan
        local measured
        measured=$(printf '%s' "$OUT" | grep -o '"device_measured_mb": [0-9.]*' | grep -o '[0-9.]*$')
        awk -v p="$planned" -v m="$measured" 'BEGIN { exit !(m >= 0.95 * p && m <= 1.05 * p) }' ||
            fail "device memory planned $planned MiB, the driver counted $measured MiB"
        assert_contains "$OUT" '"device_runtime_mb": '
        # where the embedding time went: set-up and the batch loop within embed_seconds, the
        # sink's share within the loop
        local e su lo sk
        e=$(printf '%s' "$OUT" | grep -o '"embed_seconds": [0-9.]*' | grep -o '[0-9.]*$')
        su=$(printf '%s' "$OUT" | grep -o '"device_setup_seconds": [0-9.]*' | grep -o '[0-9.]*$')
        lo=$(printf '%s' "$OUT" | grep -o '"device_loop_seconds": [0-9.]*' | grep -o '[0-9.]*$')
        sk=$(printf '%s' "$OUT" | grep -o '"sink_seconds": [0-9.]*' | grep -o '[0-9.]*$')
        # and the cache queue's thread, which runs beside the loop and ends within embed_seconds
        local pu
        pu=$(printf '%s' "$OUT" | grep -o '"cache_put_seconds": [0-9.]*' | grep -o '[0-9.]*$')
        awk -v e="$e" -v su="$su" -v lo="$lo" -v sk="$sk" -v pu="$pu" \
            'BEGIN { exit !(su >= 0 && lo > 0 && su + lo <= e + 0.002 && sk <= lo + 0.001 &&
                            pu != "" && pu >= 0 && pu <= e + 0.001) }' ||
            fail "embedding time: $e s, set-up $su s, loop $lo s, sink $sk s, puts $pu s"
        # the host memory of a GPU run counts the model's host copy, the pinned staging and the
        # CUDA runtime's allowance (408 MiB, ppdock/device.h); a host budget that cannot hold
        # them is refused at start-up, saying what each takes
        local predicted
        predicted=$(printf '%s' "$OUT" | grep -o '"predicted_peak_mb": [0-9]*' | grep -o '[0-9]*$')
        [ "${predicted:-0}" -ge 408 ] || fail "predicted host peak $predicted MiB lacks the CUDA runtime"
        assert_rc 3 emu_emb --fasta "$ESM/sequences.fasta" -o s --mem-gb 0.3
        assert_contains "$OUT" "cannot hold the GPU run's host memory"
        assert_contains "$OUT" "the CUDA runtime 408.0 (an allowance)"
        # 20 MiB cannot hold the cuBLAS workspace, 32.6 MiB not the longest sequence: both are
        # refused at start-up, saying what is needed
        assert_rc 3 emu_emb --fasta "$ESM/sequences.fasta" -o s --device-mem-gb 0.02
        assert_contains "$OUT" "alone exceed the device memory budget"
        assert_rc 3 emu_emb --fasta "$ESM/sequences.fasta" -o s --device-mem-gb 0.0318
        assert_contains "$OUT" "of device memory even alone"
    }
fi

run_tests
