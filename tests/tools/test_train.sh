#!/usr/bin/env bash
# train end to end on tiny complexes (the four db5-mini complexes cut to their first 24 residues
# per side): the overfit check, resume determinism, evaluation dumps, starting from the original
# DiffDock-PP checkpoint layout, and the refusals of caches that do not match the config.
# shellcheck source=tests/tools/lib.sh
source "$(dirname "$0")/lib.sh"

TAMPER="$TESTBIN/cache-tamper"

# tiny DIR SPLITS: the db5-mini structures cut to 24 residues per side, with SPLITS (e.g. "train
# train train val") assigned to 1R0R 1HIA 1R8S 1FC2 in that order.
tiny() {
    local dir=$1 f b i=0
    mkdir -p "$dir/structures"
    for f in "$DATA"/db5-mini/structures/*_b.pdb.gz; do
        b=$(basename "$f" .gz)
        gzip -dc "$f" | awk '/^ATOM/ { k = substr($0, 22, 6); if (k != last) { n++; last = k } if (n <= 24) print }' \
            > "$dir/structures/$b"
    done
    printf 'path,split\n' > "$dir/splits.csv"
    for id in 1R0R 1HIA 1R8S 1FC2; do
        i=$((i + 1))
        echo "$id,$(echo "$2" | cut -d' ' -f$i)" >> "$dir/splits.csv"
    done
}

CFG="$ROOT/config/demo.yaml"
gb() { graph-build -c "$CFG" --set data.data_path="$PWD/${DDIR:-d}" --set data.data_file="$PWD/${DDIR:-d}/splits.csv" -q "$@"; }
trn() { train -c "$CFG" -j 2 --device cpu --set train.epochs=1000 "$@"; }

# mean loss of the step lines FROM..TO (1-based) of a metrics.jsonl
mean_loss() {
    grep '"kind": "step"' "$1" | sed -n "$2,$3p" | sed 's/.*"loss": \([^,]*\),.*/\1/' |
        awk '{ s += $1; n++ } END { printf "%.9g", s / n }'
}

test_overfit_four_tiny_complexes() {
    tiny d "train train train train"
    assert_rc 0 gb -o g
    assert_rc 0 trn -g g -o run --set train.fixed_noise=true --set train.batch_size=4 \
        --set train.lr=3e-3 --max-steps 100 -q
    local first last
    first=$(mean_loss run/metrics.jsonl 1 10)
    last=$(mean_loss run/metrics.jsonl 91 100)
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.5 * a) }' ||
        fail "loss did not halve: first 10 steps $first, last 10 steps $last"
    grep -q '<polyline' run/loss.svg 2>/dev/null || fail "no loss plot"
}

test_resume_is_bit_identical() {
    tiny d "train train train val"
    assert_rc 0 gb -o g
    assert_rc 0 trn -g g -o a --max-steps 9 -q
    assert_rc 0 trn -g g -o b --max-steps 4 -q
    assert_rc 0 trn -g g -o b --max-steps 9 --resume -q
    cmp -s a/last.safetensors b/last.safetensors || fail "parameters after 9 steps differ from 4 + resume + 5"
    # the same losses, step by step (times and memory aside)
    local strip='s/, "seconds".*//'
    diff <(grep '"kind": "step"' a/metrics.jsonl | sed "$strip") \
        <(grep '"kind": "step"' b/metrics.jsonl | sed "$strip") >/dev/null || fail "step losses differ"
    assert_eq "$(grep -c '"kind": "step"' b/metrics.jsonl)" 9 "step lines after resume"
    # with batch norm (running statistics in the checkpoint) and dropout as well
    local bn=(--set model.no_batch_norm=false --set model.dropout=0.1)
    assert_rc 0 trn -g g -o c "${bn[@]}" --max-steps 6 -q
    assert_rc 0 trn -g g -o d "${bn[@]}" --max-steps 3 -q
    assert_rc 0 trn -g g -o d "${bn[@]}" --max-steps 6 --resume -q
    cmp -s c/last.safetensors d/last.safetensors || fail "batch norm + dropout: resume differs"
    # best.safetensors was written at the epoch ends and the run is restartable from it
    [ -s a/best.safetensors ] || fail "no best.safetensors"
}

test_resume_mid_epoch_keeps_the_batch_size_and_seed() {
    tiny d "train train train val"
    assert_rc 0 gb -o g
    local one=(--set train.batch_size=1) # three steps an epoch
    assert_rc 0 trn -g g -o r "${one[@]}" --max-steps 2 -q
    # mid-epoch the resume point counts batches of a seeded order: another size or seed is refused
    assert_rc 2 trn -g g -o r --set train.batch_size=2 --max-steps 4 --resume
    assert_contains "$OUT" "stopped 2 batches into epoch 1 with train.batch_size 1 and seed"
    assert_rc 2 trn -g g -o r "${one[@]}" --seed 7 --max-steps 4 --resume
    assert_contains "$OUT" "would skip or repeat complexes"
    # at an epoch's start the new settings apply from there
    assert_rc 0 trn -g g -o r "${one[@]}" --max-steps 3 --resume -q
    assert_rc 0 trn -g g -o r --set train.batch_size=2 --max-steps 4 --resume
    assert_contains "$OUT" "from epoch 2 on it goes on with 2 and"
}

test_resume_after_a_kill_between_checkpoints_keeps_one_metrics_line_per_step() {
    tiny d "train train train val"
    assert_rc 0 gb -o g
    local one=(--set train.batch_size=1) # three steps an epoch: epoch lines at steps 3 and 6
    assert_rc 0 trn -g g -o a "${one[@]}" --max-steps 8 -q
    assert_rc 0 trn -g g -o b "${one[@]}" --max-steps 4 -q
    cp b/last.safetensors ck4
    assert_rc 0 trn -g g -o b "${one[@]}" --max-steps 7 --resume -q
    printf '{"kind": "step", "step": 8, "epo' >>b/metrics.jsonl # a line cut short by the kill
    cp ck4 b/last.safetensors # killed after step 7, its last checkpoint at step 4
    assert_rc 0 trn -g g -o b "${one[@]}" --max-steps 8 --resume
    # steps 5-7, the epoch-2 line (step 6) and the cut line
    assert_contains "$OUT" "5 line(s) after the checkpoint's step 4 dropped"
    local strip='s/, "seconds".*//; s/, "peak_rss_mb".*//'
    diff <(sed "$strip" a/metrics.jsonl) <(sed "$strip" b/metrics.jsonl) >/dev/null ||
        fail "metrics.jsonl after the kill and resume differs from the uninterrupted run's"
    assert_contains "$(cat b/loss.svg)" "over 8 steps"
}

# sigterm_then_resume TRAIN-COMMAND...: a run of batch-1 steps (three per epoch) gets SIGTERM after its
# fourth step line, stops after the step in progress with a checkpoint (exit 1, "interrupted":
# true), and resuming it to 3 more steps gives the parameters of an uninterrupted run. The stop
# must fall inside an epoch (where the GPU path has prepared the next batch ahead): a stop at an
# epoch's end is tried again, up to 5 times.
sigterm_then_resume() {
    local n=0 rc i steps=0 _try
    tiny d "train train train val"
    assert_rc 0 gb -o g
    for _try in 1 2 3 4 5; do
        rm -rf b
        # a simple command in the background: $! is train itself, not a subshell
        "$@" -g g -o b --set train.batch_size=1 --max-steps 100000 -q --json >b.json 2>b.log &
        local pid=$!
        for i in $(seq 1 1200); do
            n=$(grep -c '"kind": "step"' b/metrics.jsonl 2>/dev/null)
            # a later stop each try: when the steps' timing repeats, a fixed threshold stops at
            # the same step (a multiple of 3) every time
            [ "${n:-0}" -ge $((3 + _try)) ] && break
            sleep 0.05
        done
        kill -TERM "$pid"
        # a train that ignored the signal would run 100,000 steps: end it after 2 minutes (the
        # watchdog polls, so it ends with train and leaves nothing behind)
        (for _ in $(seq 1 1200); do
            kill -0 "$pid" 2>/dev/null || exit 0
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null) &
        wait "$pid"
        rc=$?
        assert_eq "$rc" 1 "exit status after SIGTERM ($(tail -2 b.log | tr '\n' ' '))"
        assert_contains "$(cat b.json)" '"interrupted": true'
        steps=$(grep -c '"kind": "step"' b/metrics.jsonl)
        [ $((steps % 3)) -ne 0 ] && break
    done
    if [ "$steps" -lt 4 ] || [ "$steps" -ge 100 ] || [ $((steps % 3)) -eq 0 ]; then
        fail "$steps steps before the stop"
    fi
    assert_rc 0 "$@" -g g -o b --set train.batch_size=1 --max-steps $((steps + 3)) --resume -q
    assert_rc 0 "$@" -g g -o a --set train.batch_size=1 --max-steps $((steps + 3)) -q
    cmp -s a/last.safetensors b/last.safetensors ||
        fail "stopped at step $steps by SIGTERM and resumed: the parameters differ from an uninterrupted run"
}

test_sigterm_stops_with_a_checkpoint_and_resume_is_bit_identical() {
    sigterm_then_resume train -c "$CFG" -j 2 --device cpu --set train.epochs=1000
}

test_metrics_lines_carry_the_documented_fields() {
    tiny d "train train train val"
    assert_rc 0 gb -o g
    assert_rc 0 trn -g g -o run --max-steps 4 --json
    assert_contains "$OUT" '"steps": 4'
    local f
    for f in step epoch loss tr_loss rot_loss grad_norm lr complexes_per_s peak_rss_mb; do
        assert_contains "$(head -1 run/metrics.jsonl)" "\"$f\": " "first step line"
    done
    assert_contains "$(grep '"kind": "epoch"' run/metrics.jsonl | head -1)" '"val_loss": ' "epoch line"
    assert_contains "$(cat run/config.yaml)" "ns: 8"
    [[ $OUT =~ \"best_val_loss\":\ [0-9]+\.[0-9]+ ]] || fail "no best_val_loss number after an epoch: $OUT"
    # before any epoch has ended there is no validation loss: null, not 0
    assert_rc 0 trn -g g -o nv --set train.batch_size=1 --max-steps 1 --json
    assert_contains "$OUT" '"best_val_loss": null'
    assert_rc 0 trn -g g -o nv2 --set train.batch_size=1 --max-steps 1
    assert_contains "$OUT" "best val loss none yet"
    # every batch of an epoch but the first is read while the one before it computes
    assert_rc 0 trn -g g -o ra --set train.batch_size=1 --max-steps 6 -q
    local pattern
    pattern=$(grep '"kind": "step"' ra/metrics.jsonl | grep -o '"read_ahead": [a-z]*' | awk '{ printf "%s ", $2 }')
    assert_eq "$pattern" "false true true false true true " "read-ahead per step (3 batches per epoch)"
    for f in batch_read_ms batch_wait_ms prep_ms; do
        assert_contains "$(sed -n 2p ra/metrics.jsonl)" "\"$f\": " "second step line"
    done
}

test_a_run_directory_is_never_started_over_nor_shared() {
    tiny d "train train train val"
    assert_rc 0 gb -o g
    assert_rc 2 trn -g g -o run --max-steps 2 --resume -q
    assert_contains "$OUT" "run has no last.safetensors to resume: drop --resume"
    assert_rc 0 trn -g g -o run --max-steps 2 -q
    local before
    before=$(cat run/metrics.jsonl run/last.safetensors | cksum)
    # the same command again, without --resume: refused, nothing in RUN touched
    assert_rc 2 trn -g g -o run --max-steps 4 -q
    assert_contains "$OUT" "run already holds a run (run/last.safetensors): add --resume"
    assert_rc 2 trn -g g -o run --max-steps 4 --json
    assert_contains "$OUT" '{"error": "run already holds a run (run/last.safetensors): add --resume'
    assert_contains "$OUT" '"status": "PPD_ERR_USAGE", "exit": 2}'
    assert_eq "$(cat run/metrics.jsonl run/last.safetensors | cksum)" "$before" "RUN after the refusal"
    # another process holds RUN's lock (as a train still running would); it waits for the lock,
    # which the probe below takes for an instant (a non-blocking holder lost that race under load)
    (exec 9>>run/train.lock && flock -w 10 9 && exec sleep 30) &
    local holder=$!
    local i
    for i in $(seq 50); do ! flock -n run/train.lock true && break; sleep 0.1; done
    assert_rc 3 trn -g g -o run --max-steps 4 --resume -q
    kill "$holder"
    wait "$holder" 2>/dev/null
    assert_contains "$OUT" "run/train.lock: locked by another train writing this run"
    assert_eq "$(cat run/metrics.jsonl run/last.safetensors | cksum)" "$before" "RUN after the lock refusal"
    assert_rc 0 trn -g g -o run --max-steps 4 --resume --json
    assert_contains "$OUT" '"steps": 4'
}

test_eval_only_dumps_predictions_with_fixed_noise() {
    tiny d "train train val val"
    assert_rc 0 gb -o g
    assert_rc 0 trn -g g -o run --max-steps 2 -q
    assert_rc 0 train -c "$CFG" -j 2 -g g --eval-only --init-from run/last.safetensors --split val \
        --dump-predictions p.jsonl --json
    assert_contains "$OUT" '"complexes": 2'
    assert_eq "$(wc -l < p.jsonl | tr -d ' ')" 2 "prediction lines"
    local f
    for f in id t sigma_tr sigma_rot tr_update rot_update tr_pred rot_pred tr_target rot_target loss_tr loss_rot; do
        assert_contains "$(head -1 p.jsonl)" "\"$f\": " "prediction line"
    done
    # fixed noise: a second evaluation gives the same lines
    assert_rc 0 train -c "$CFG" -j 2 -g g --eval-only --init-from run/last.safetensors --split val \
        --dump-predictions q.jsonl -q
    cmp -s p.jsonl q.jsonl || fail "two evaluations differ"
}

test_init_from_the_original_checkpoint_layout() {
    # the golden DiffDock-PP .pth (ns 8, nv 3, 4 layers, lm_embed_dim 16) with a 16-wide ESM
    # cache of a random-weight ESM-2 (2 layers, 16 wide, 4 heads). The original reads ESM
    # feature 0 as an embedding index (spec §3.2), so it must stay within (-1, 24): with seed 3,
    # 1R8S and 1FC2 have such features (1R0R and 1HIA do not); with seed 0 none has: those
    # complexes are skipped with a warning (exit 1).
    tiny d "train train val val"
    assert_rc 0 gb -o g
    assert_rc 0 esm-embed -j 2 --device cpu --random-init 2,16,4 --seed 3 -g g -o e -q
    assert_rc 0 esm-embed -j 2 --device cpu --random-init 2,16,4 --seed 0 -g g -o e0 -q
    local set=(--set model.ns=8 --set model.nv=3 --set model.num_conv_layers=4 --set model.lm_embed_dim=16
        --set model.dist_embed_dim=32 --set model.cross_dist_embed_dim=32)
    assert_rc 0 train -c "$CFG" -j 2 "${set[@]}" -g g -e e --eval-only \
        --init-from "$DATA/diffdock-golden/model.pth" --json
    assert_contains "$OUT" '"complexes": 2'
    assert_rc 1 train -c "$CFG" -j 2 "${set[@]}" -g g -e e0 --eval-only \
        --init-from "$DATA/diffdock-golden/model.pth"
    assert_contains "$OUT" "embedding index"
    # fine-tuning: train on the two complexes whose features suit the original (same chains, so
    # the same ESM cache serves)
    tiny d2 "test test train train"
    DDIR=d2 assert_rc 0 gb -o g2
    assert_rc 0 trn "${set[@]}" -g g2 -e e -o ft --init-from "$DATA/diffdock-golden/model.pth" --max-steps 2 -q
    [ -s ft/last.safetensors ] || fail "no checkpoint after fine-tuning"
    # another size refuses it, naming a tensor
    assert_rc 2 train -c "$CFG" -j 2 -g g --eval-only --init-from "$DATA/diffdock-golden/model.pth"
    assert_contains "$OUT" "encoder."
}

test_refuses_caches_that_do_not_match_the_config() {
    tiny d "train train val val"
    assert_rc 0 gb -o g10 --set data.knn_size=10
    assert_rc 2 trn -g g10 -o run --max-steps 1
    assert_contains "$OUT" "data.knn_size"
    assert_rc 0 gb -o g
    assert_rc 0 esm-embed -j 2 --device cpu --random-init 2,16,4 -g g -o e -q
    assert_rc 2 trn -g g -e e -o run --max-steps 1 --set model.lm_embed_dim=32
    assert_contains "$OUT" "lm_embed_dim"
    assert_rc 2 trn -g g -o run --max-steps 1 --set model.lm_embed_dim=16
    assert_contains "$OUT" "--esm"
    # an ESM cache the model does not use: trained without it, and said so with the width
    assert_rc 0 trn -g g -e e -o run0 --max-steps 1
    assert_contains "$OUT" "--esm e is not used: model.lm_embed_dim is 0"
    assert_contains "$OUT" "set model.lm_embed_dim=16 to use the embeddings"
}

test_memory_budget_splits_batches_into_passes() {
    tiny d "train train train val"
    assert_rc 0 gb -o g
    # a roomy budget: one pass per batch, planned activation memory close to what was used
    assert_rc 0 trn -g g -o a --set train.batch_size=3 --max-steps 2 -q
    assert_contains "$(head -1 a/metrics.jsonl)" '"passes": 1,'
    # each step's activation memory as used, against its own plan (the plan is an upper bound
    # within 2%; a run-long high-water mark would exceed a later, smaller step's plan): one
    # whole db5-mini complex per step (249 to 347 residues a side) and small edge chunks, so
    # that the complexes' sizes show
    mkdir -p full/structures
    cp "$DATA"/db5-mini/structures/*_b.pdb.gz full/structures/
    printf 'path,split\n1R0R,train\n1HIA,train\n1R8S,train\n1FC2,train\n' >full/splits.csv
    DDIR=full assert_rc 0 gb -o gfull
    assert_rc 0 trn -g gfull -o one --set train.batch_size=1 --set train.chunk_edges=64 \
        --max-steps 6 -q
    grep '"kind": "step"' one/metrics.jsonl | awk '{
            match($0, /"planned_activation_mb": [0-9.]*/); p = substr($0, RSTART + 24, RLENGTH - 24)
            match($0, /"activation_mb": [0-9.]*/); u = substr($0, RSTART + 17, RLENGTH - 17)
            if (!(u > 0 && u <= p + 0.05 && u >= 0.9 * p)) { print "step " NR ": " u " of " p; bad = 1 }
        } END { exit bad }' || fail "a step used more activation memory than it planned, or far less"
    # a budget that holds one tiny complex at a time (small edge chunks, so that the complexes
    # dominate): three passes, the gradients add up
    assert_rc 0 trn -g g -o b --set train.batch_size=3 --set train.chunk_edges=64 \
        --set train.max_mem_gb=0.1575 --max-steps 2
    assert_contains "$(head -1 b/metrics.jsonl)" '"passes": 3,'
    # one that cannot hold the model's own buffers: refused at start-up, saying what it needs
    assert_rc 3 trn -g g -o c --set train.max_mem_gb=0.05 --max-steps 1
    assert_contains "$OUT" "train.max_mem_gb"
}

test_refuses_a_corrupt_cache() {
    tiny d "train train val val"
    assert_rc 0 gb -o g
    "$TAMPER" g flip 1HIA 500 || fail "tamper"
    assert_rc 3 trn -g g -o run --max-steps 1
    assert_contains "$OUT" "g: cache-check finds 1 problem(s): run cache-check g (--repair) first (then graph-build redoes"
    [ ! -e run/last.safetensors ] || fail "trained on a corrupt cache"
    # a cache whose build stage stopped before the end is completed by that stage, not repaired
    assert_rc 0 gb -o g2
    "$TAMPER" g2 set-meta sealed 0 >/dev/null || fail "tamper"
    assert_rc 3 trn -g g2 -o run --max-steps 1
    assert_contains "$OUT" "g2 is not complete: its writer was stopped or killed before it finished; rerun graph-build"
    assert_not_contains "$OUT" "--repair"
    # while a writer still holds it (its lock taken here as a running graph-build would): wait
    (exec 9>>g2/writer.lock && flock -w 10 9 && exec sleep 30) &
    local holder=$! i
    for i in $(seq 50); do ! flock -n g2/writer.lock true && break; sleep 0.1; done
    assert_rc 3 trn -g g2 -o run --max-steps 1
    kill "$holder"
    wait "$holder" 2>/dev/null
    assert_contains "$OUT" "g2 is not complete: a writer is still running on it; wait for it to finish"
}

test_device_cuda_needs_cuda_and_a_gpu() {
    # bin/ is either a CPU-only build (refuses cuda) or a CUDA build on a machine without a GPU
    # here (says so); on a GPU machine it runs, and the cuda_ tests below cover it
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then return 0; fi
    tiny d "train train train val"
    assert_rc 0 gb -o g
    OUT=$(train -c "$CFG" -g g -o run --max-steps 1 --device cuda 2>&1)
    local rc=$?
    [ "$rc" -ne 0 ] || fail "--device cuda succeeded without a GPU"
    case "$OUT" in *"built without CUDA"* | *"no CUDA device"*) ;; *) fail "unclear refusal: $OUT" ;; esac
    # auto falls back to the CPU
    assert_rc 0 train -c "$CFG" -g g -o auto --max-steps 1 --device auto --json
    assert_contains "$OUT" '"device": "cpu"'
    assert_rc 2 train -c "$CFG" -g g -o run --device tpu
}

# The GPU pass: PPD_EMU_BIN names a directory with a CUDA train (`make test`: the CPU emulation
# of tests/emu, the same kernels nvcc compiles; scripts/gpu-check.sh: the real CUDA build).
EMU_TRAIN=""
[ -n "$CUDA_BIN" ] && EMU_TRAIN="$CUDA_BIN/train"
if [ -n "$EMU_TRAIN" ] && [ -x "$EMU_TRAIN" ]; then
    gtrn() { "$EMU_TRAIN" -c "$CFG" -j 2 --device cuda --deterministic --set train.epochs=1000 "$@"; }

    # the loss of every step line of a metrics.jsonl, one per line
    step_losses() { grep '"kind": "step"' "$1" | sed 's/.*"loss": \([^,]*\),.*/\1/'; }

    # max over steps of |b - a| / |a| between two metrics.jsonl, for steps FROM..TO
    max_rel() {
        paste <(step_losses "$1" | sed -n "$3,$4p") <(step_losses "$2" | sed -n "$3,$4p") |
            awk '{ d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > m) m = d } END { printf "%.3g", m + 0 }'
    }

    test_cuda_training_matches_the_cpu_loss_curve() {
        tiny d "train train train val"
        assert_rc 0 gb -o g
        assert_rc 0 trn -g g -o cpu --max-steps 50 -q
        assert_rc 0 gtrn -g g -o gpu --max-steps 50 --json
        assert_contains "$OUT" '"device_planned_peak_mb"'
        [ "$(step_losses gpu/metrics.jsonl | wc -l)" -eq 50 ] || fail "not 50 steps on the GPU"
        local r
        r=$(max_rel cpu/metrics.jsonl gpu/metrics.jsonl 1 50)
        awk -v r="$r" 'BEGIN { exit !(r <= 1e-3) }' || fail "GPU losses leave 1e-3 of the CPU's: $r"
    }

    test_cuda_training_with_esm_features_stays_in_the_cpus_own_envelope() {
        # With 16-wide ESM features this small model amplifies any change of summation order:
        # the CPU against itself with another edge chunk (dW summed in another order) drifts
        # from 1e-7 at step 7 to 1e-3 by step 40 (Adam normalises near-zero gradients). So the
        # GPU must match the CPU closely while the drift is small (10 steps, 1e-5) and stay
        # within twice the CPU's own drift over all 50 steps.
        tiny d "train train train val"
        assert_rc 0 gb -o g
        "$TESTBIN/esm-random" g e 16 2>/dev/null || fail "esm-random"
        local lm=(-e e --set model.lm_embed_dim=16 --set train.patience=1000) early all own
        assert_rc 0 trn -g g "${lm[@]}" -o cpu --max-steps 50 -q
        assert_rc 0 trn -g g "${lm[@]}" -o cpu7 --max-steps 50 -q --set train.chunk_edges=7
        assert_rc 0 gtrn -g g "${lm[@]}" -o gpu --max-steps 50 -q
        early=$(max_rel cpu/metrics.jsonl gpu/metrics.jsonl 1 10)
        all=$(max_rel cpu/metrics.jsonl gpu/metrics.jsonl 1 50)
        own=$(max_rel cpu/metrics.jsonl cpu7/metrics.jsonl 1 50)
        awk -v e="$early" -v a="$all" -v o="$own" 'BEGIN { exit !(e <= 1e-5 && a <= 2 * o) }' ||
            fail "GPU vs CPU: $early over 10 steps (tol 1e-5), $all over 50 (the CPU's own drift $own)"
    }

    test_cuda_resume_is_bit_identical() {
        tiny d "train train train val"
        assert_rc 0 gb -o g
        local bn=(--set model.no_batch_norm=false --set model.dropout=0.1)
        assert_rc 0 gtrn -g g -o a "${bn[@]}" --max-steps 6 -q
        assert_rc 0 gtrn -g g -o b "${bn[@]}" --max-steps 3 -q
        assert_rc 0 gtrn -g g -o b "${bn[@]}" --max-steps 6 --resume -q
        cmp -s a/last.safetensors b/last.safetensors || fail "GPU: 6 steps differ from 3 + resume + 3"
    }

    test_cuda_prepares_the_next_batch_while_the_step_runs() {
        # batch 1, three batches per epoch, a checkpoint every 2 steps: the next batch is
        # prepared during a step unless it is the epoch's last or the step saves a checkpoint
        # (whose random state must precede the next batch's noise)
        tiny d "train train train val"
        assert_rc 0 gb -o g
        assert_rc 0 gtrn -g g -o a --set train.batch_size=1 --set train.checkpoint_steps=2 \
            --max-steps 6 -q
        local pattern
        pattern=$(grep '"kind": "step"' a/metrics.jsonl | grep -o '"prepared_ahead": [a-z]*' | awk '{ printf "%s ", $2 }')
        assert_eq "$pattern" "false true false false false true " "prepared ahead per step"
        # and stopping at a checkpoint, then resuming, gives the uninterrupted run
        assert_rc 0 gtrn -g g -o b --set train.batch_size=1 --set train.checkpoint_steps=2 \
            --max-steps 4 -q
        assert_rc 0 gtrn -g g -o b --set train.batch_size=1 --set train.checkpoint_steps=2 \
            --max-steps 6 --resume -q
        cmp -s a/last.safetensors b/last.safetensors || fail "GPU: 6 steps differ from 4 + resume + 2"
    }
    test_cuda_sigterm_discards_the_batch_prepared_ahead_and_resume_is_bit_identical() {
        sigterm_then_resume "$EMU_TRAIN" -c "$CFG" -j 2 --device cuda --deterministic \
            --set train.epochs=1000
    }
    test_cuda_skips_a_complex_too_large_for_the_pass_arena() {
        # three tiny complexes and the whole 1R8S (160 + 187 residues): with a 64-edge chunk and
        # a 36 MB budget (32 MB model and cuBLAS workspace, 5 MB of passes) the tiny ones train
        # and 1R8S, which needs about 12 MB alone, is skipped with a warning (exit 1: partial)
        tiny d "train train train val"
        gzip -dc "$DATA/db5-mini/structures/1R8S_r_b.pdb.gz" >d/structures/1R8S_r_b.pdb
        gzip -dc "$DATA/db5-mini/structures/1R8S_l_b.pdb.gz" >d/structures/1R8S_l_b.pdb
        assert_rc 0 gb -o g
        assert_rc 1 gtrn -g g -o run --max-steps 3 --set train.epochs=2 --device-mem-gb 0.036 \
            --set device.edges_per_chunk=64 --json
        assert_contains "$OUT" "complex 1R8S needs"
        assert_contains "$OUT" "skipped (raise device.budget_gb"
        assert_contains "$OUT" '"steps": 3'
    }

    test_cuda_training_plans_and_reports_device_memory() {
        tiny d "train train train val"
        assert_rc 0 gb -o g
        assert_rc 0 gtrn -g g -o run --max-steps 3 -q
        local line planned peak
        line=$(grep '"kind": "step"' run/metrics.jsonl | head -1)
        planned=$(printf '%s' "$line" | grep -o '"device_planned_mb": [0-9.]*' | grep -o '[0-9.]*$')
        peak=$(printf '%s' "$line" | grep -o '"device_peak_mb": [0-9.]*' | grep -o '[0-9.]*$')
        awk -v p="$planned" -v u="$peak" 'BEGIN { exit !(p > 0 && u <= p && u >= 0.95 * p) }' ||
            fail "step 1: device memory planned '$planned' MB, used '$peak' MB"
        assert_contains "$line" '"device_wait_ms": ' "step 1"
        # the stream's kernel time: positive, and within the step's wall time
        grep '"kind": "step"' run/metrics.jsonl | awk '{
                match($0, /"seconds": [0-9.]*/); s = substr($0, RSTART + 11, RLENGTH - 11)
                match($0, /"device_busy_ms": [0-9.]*/); b = substr($0, RSTART + 18, RLENGTH - 18)
                if (!(b > 0 && b <= 1000 * s + 1)) { print "step " NR ": busy " b " ms in " s " s"; bad = 1 }
            } END { exit bad }' || fail "device_busy_ms out of range"
        # the default reservation is what this cache can need (the emulated GPU has 4 GB free:
        # 95% of it was the default before), and every step's pass fits it
        assert_rc 0 gtrn -g g -o auto --max-steps 3 --json
        assert_contains "$OUT" "the largest this cache can need"
        local reserved peak_all
        reserved=$(printf '%s' "$OUT" | grep -o '"device_reserved_mb": [0-9.]*' | grep -o '[0-9.]*$')
        peak_all=$(printf '%s' "$OUT" | grep -o '"device_planned_peak_mb": [0-9.]*' | grep -o '[0-9.]*$')
        awk -v r="$reserved" -v p="$peak_all" 'BEGIN { exit !(r > 0 && r < 500 && p <= r) }' ||
            fail "default reservation $reserved MB, planned peak $peak_all MB"
        # it has room for every pass's upload beside the pass before (3 steps + 1 evaluation
        # pass per val complex at least)
        assert_contains "$OUT" '"device_uploads_waited": 0,'
        assert_contains "$OUT" '"device_profile_ms": null'
        printf '%s' "$OUT" | grep -q '"device_uploads": [4-9]' ||
            fail "uploads: $(printf '%s' "$OUT" | grep -o '"device_uploads": [0-9]*')"
        # a budget of the model and the largest pass only: uploads wait for the pass before,
        # and the run is the same, step for step
        local tight
        tight=$(awk -v p="$peak_all" 'BEGIN { printf "%.6f", (p + 0.05) / 1024 }')
        assert_rc 0 gtrn -g g -o tight --max-steps 3 --json --device-mem-gb "$tight"
        printf '%s' "$OUT" | grep -q '"device_uploads_waited": [1-9]' ||
            fail "budget $tight GB: $(printf '%s' "$OUT" | grep -o '"device_uploads[^,]*, "device_uploads_waited": [0-9]*')"
        [ "$(step_losses auto/metrics.jsonl)" = "$(step_losses tight/metrics.jsonl)" ] ||
            fail "losses differ between the default and the tight reservation"
        # --profile: the stream's time per kind of op, with batch norm so that every kind runs;
        # the same losses as without
        assert_rc 0 gtrn -g g -o p0 --max-steps 2 --set model.no_batch_norm=false --json
        assert_rc 0 gtrn -g g -o p1 --max-steps 2 --set model.no_batch_norm=false --json --profile
        local prof
        prof=$(printf '%s' "$OUT" | grep -o '"device_profile_ms": {[^}]*}')
        for op in embed edge_mlp conv_fc tp scatter batch_norm heads optimizer; do
            printf '%s' "$prof" | grep -Eq "\"$op\": [0-9.]*[1-9]" ||
                fail "no time for $op in: $prof"
        done
        [ "$(step_losses p0/metrics.jsonl)" = "$(step_losses p1/metrics.jsonl)" ] ||
            fail "--profile changed the losses"
        assert_contains "$(sed -n 2p run/metrics.jsonl)" '"read_ahead": true' "step 2"
        # a budget below the model and one pass is refused at start-up with the sizes
        assert_rc 3 gtrn -g g -o small --max-steps 1 --device-mem-gb 0.01
        assert_contains "$OUT" "cannot hold the model"
        assert_rc 2 gtrn -g g -o bf --max-steps 1 --precision bf16
        assert_contains "$OUT" "device.precision=bf16"
        # a GPU that does not exist is an error, with auto too (not a quiet run on the CPU)
        assert_rc 2 "$EMU_TRAIN" -c "$CFG" -g g -o nogpu --max-steps 1 --device auto --gpu 5
        assert_contains "$OUT" "CUDA device 5 does not exist"
    }
fi

run_tests
