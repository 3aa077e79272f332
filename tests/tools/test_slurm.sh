#!/usr/bin/env bash
# The SLURM scripts (slurm/) against a fake sbatch that records each submission: the pipeline's
# dependency chain and where GPUs are requested, train.sbatch's staging and automatic --resume
# (run directly, with a fake train that prints its arguments), esm-embed.sbatch's publishing of
# a stopped run's work.
# shellcheck source=tests/tools/lib.sh
source "$(dirname "$0")/lib.sh"

# fake_sbatch DIR: an sbatch on PATH that appends its arguments to DIR/sbatch.log, one line per
# submission, and prints job ids 101, 102, ... for --parsable
fake_sbatch() {
    mkdir -p "$1/fakebin"
    cat >"$1/fakebin/sbatch" <<'FAKE'
#!/usr/bin/env bash
log=$(dirname "$0")/../sbatch.log
n=$(( $(wc -l <"$log" 2>/dev/null || echo 0) + 101 ))
echo "$n $*" >>"$log"
echo "$n"
FAKE
    chmod +x "$1/fakebin/sbatch"
    PATH="$1/fakebin:$PATH"
}

# stopped_by_warning TOOL CACHE SCRIPT ARGS...: bin/TOOL becomes a fake that copies CACHE (a
# cache as the stopped tool leaves it) to its -o directory, then waits for SIGTERM and stops
# (exit 1); bin/cache-check is the real one. Runs `bash SCRIPT ARGS...` with PPDOCK_BIN=bin and
# SLURM_TMPDIR=scratch, sends it SLURM's warning (USR1) once the tool has started, and checks
# that the job exited 1 after the tool got TERM. OUT: the job's output.
stopped_by_warning() {
    local tool=$1 cache=$2 pid i rc
    shift 2
    mkdir -p bin scratch
    ln -sf "$BIN/cache-check" bin/cache-check
    cat >"bin/$tool" <<FAKE
#!/usr/bin/env bash
out=""
while [ \$# -gt 0 ]; do [ "\$1" = -o ] && out=\$2; shift; done
cp "$PWD/$cache/data.mdb" "\$out/data.mdb"
trap 'echo "$tool got TERM"; exit 1' TERM
echo started >started
for _ in \$(seq 1 200); do sleep 0.05; done
echo "$tool was not stopped"
FAKE
    chmod +x "bin/$tool"
    env PPDOCK_BIN="$PWD/bin" SLURM_TMPDIR="$PWD/scratch" bash "$@" >warn.log 2>&1 &
    pid=$!
    for i in $(seq 1 100); do [ -e started ] && break; sleep 0.05; done
    kill -USR1 "$pid"
    wait "$pid"
    rc=$?
    OUT=$(cat warn.log)
    assert_eq "$rc" 1 "job status after the warning"
    assert_contains "$OUT" "$tool got TERM"
}

test_pipeline_chains_the_stages_and_asks_gpus_for_esm_and_train() {
    fake_sbatch "$PWD"
    assert_rc 0 env ESM_WEIGHTS=/m/w.pt RUN_DIR=/r GPU_GRES=gpu:1 \
        bash "$ROOT/slurm/pipeline.sh" config/db5.yaml /caches/x -j 4
    assert_eq "$(wc -l <sbatch.log | tr -d ' ')" 4 "submissions"
    local g e c t
    g=$(sed -n 1p sbatch.log) e=$(sed -n 2p sbatch.log) c=$(sed -n 3p sbatch.log) t=$(sed -n 4p sbatch.log)
    assert_contains "$g" "graph-build.sbatch config/db5.yaml /caches/x/graphs -j 4"
    assert_not_contains "$g" "--gres"
    assert_contains "$e" "--gres=gpu:1 --dependency=afterok:101 "
    assert_contains "$e" "esm-embed.sbatch /m/w.pt /caches/x/graphs /caches/x/esm"
    assert_contains "$c" "--dependency=afterok:102 "
    assert_not_contains "$c" "--gres"
    assert_contains "$t" "--gres=gpu:1 --dependency=afterok:103 "
    assert_contains "$t" "train.sbatch config/db5.yaml /caches/x/graphs /caches/x/esm /r"
    # without GPU_GRES nothing asks for a GPU, and without RUN_DIR there is no train job
    rm sbatch.log
    assert_rc 0 env ESM_WEIGHTS=/m/w.pt bash "$ROOT/slurm/pipeline.sh" config/db5.yaml /caches/x
    assert_eq "$(wc -l <sbatch.log | tr -d ' ')" 3 "submissions without RUN_DIR"
    assert_not_contains "$(cat sbatch.log)" "--gres"
}

test_train_sbatch_stages_the_caches_and_resumes_a_run() {
    mkdir -p bin g e run scratch
    printf 'graphs' >g/data.mdb
    printf 'esm' >e/data.mdb
    cat >bin/train <<'FAKE'
#!/usr/bin/env bash
echo "train $*"
for a in "$@"; do case $a in */graphs) cat "$a/data.mdb"; echo ;; esac; done
FAKE
    chmod +x bin/train
    assert_rc 0 env PPDOCK_BIN="$PWD/bin" SLURM_TMPDIR="$PWD/scratch" SLURM_JOB_ID=7 \
        SLURM_CPUS_PER_TASK=4 bash "$ROOT/slurm/train.sbatch" c.yaml g e run --max-steps 5
    assert_contains "$OUT" "-g $PWD/scratch/ppdock-train.7/graphs -e $PWD/scratch/ppdock-train.7/esm -o run -j 4 --max-steps 5"
    assert_contains "$OUT" "graphs" "staged graph cache"
    assert_not_contains "$OUT" "--resume"
    [ -z "$(ls scratch)" ] || fail "scratch not cleaned: $(ls scratch)"
    # a run with a checkpoint continues
    touch run/last.safetensors
    assert_rc 0 env PPDOCK_BIN="$PWD/bin" SLURM_TMPDIR="$PWD/scratch" bash "$ROOT/slurm/train.sbatch" c.yaml g e run
    assert_contains "$OUT" "continuing run (--resume)"
    assert_contains "$OUT" "-o run -j 1 --resume"
    # SLURM's early warning (USR1 to the batch shell) reaches train as SIGTERM; train's exit
    # status (1: stopped, checkpointed) is the job's
    cat >bin/train <<'FAKE'
#!/usr/bin/env bash
trap 'echo "train got TERM"; exit 1' TERM
echo started >started
for _ in $(seq 1 200); do sleep 0.05; done
echo "train was not stopped"
FAKE
    env PPDOCK_BIN="$PWD/bin" SLURM_TMPDIR="$PWD/scratch" bash "$ROOT/slurm/train.sbatch" c.yaml g e run >warn.log 2>&1 &
    local pid=$! i rc
    for i in $(seq 1 100); do [ -e started ] && break; sleep 0.05; done
    kill -USR1 "$pid"
    wait "$pid"
    rc=$?
    assert_eq "$rc" 1 "job status after the warning"
    assert_contains "$(cat warn.log)" "train got TERM"
    [ -z "$(ls scratch)" ] || fail "scratch not cleaned after the warning: $(ls scratch)"
    # train's failure is the job's, and the staged caches go all the same
    printf '#!/usr/bin/env bash\nexit 3\n' >bin/train
    assert_rc 3 env PPDOCK_BIN="$PWD/bin" SLURM_TMPDIR="$PWD/scratch" bash "$ROOT/slurm/train.sbatch" c.yaml g e run
    [ -z "$(ls scratch)" ] || fail "scratch not cleaned after a failure: $(ls scratch)"
}

test_esm_embed_sbatch_publishes_what_a_stopped_run_embedded() {
    # a real ESM cache of db5-mini's chains, unsealed as a stopped esm-embed leaves it
    assert_rc 0 graph-build --set "data.data_path=$DATA/db5-mini" \
        --set "data.data_file=$DATA/db5-mini/splits.csv" -o g
    assert_rc 0 esm-embed --device cpu --weights "$DATA/esm/tiny/model.safetensors" -g g -o stopped
    "$TESTBIN/cache-tamper" stopped set-meta sealed 0 >/dev/null
    stopped_by_warning esm-embed stopped "$ROOT/slurm/esm-embed.sbatch" w.pt g dest/esm
    assert_contains "$OUT" "publishing what it embedded to dest/esm; resubmit"
    # what it embedded is published, sealed as it was
    assert_rc 0 cache-check dest/esm
    assert_contains "$OUT" "sealed, 8 records, 8 ok, 0 problems"
    [ -z "$(ls scratch)" ] || fail "scratch not cleaned: $(ls scratch)"
}

test_graph_build_sbatch_keeps_a_stopped_runs_complexes_apart_and_resumes_from_them() {
    # a real graph cache of two of db5-mini's four complexes, unsealed as a stopped graph-build
    # leaves it
    printf 'path,split\n1R0R,train\n1HIA,train\n' >two.csv
    assert_rc 0 graph-build --set "data.data_path=$DATA/db5-mini" --set data.data_file=two.csv \
        -o stopped
    "$TESTBIN/cache-tamper" stopped set-meta sealed 0 >/dev/null
    local sets=(--set "data.data_path=$DATA/db5-mini" --set "data.data_file=$DATA/db5-mini/splits.csv")
    stopped_by_warning graph-build stopped "$ROOT/slurm/graph-build.sbatch" \
        "$ROOT/config/db5.yaml" dest/graphs "${sets[@]}"
    assert_contains "$OUT" "keeping the complexes it built in dest/graphs.partial"
    # not published as the data set's cache: train would take it for the whole set
    [ ! -e dest/graphs ] || fail "a stopped run's partial cache was published to dest/graphs"
    assert_rc 0 cache-check dest/graphs.partial
    assert_contains "$OUT" "sealed, 2 records, 2 ok, 0 problems"
    [ -z "$(ls scratch)" ] || fail "scratch not cleaned: $(ls scratch)"
    # the resubmitted job builds only the rest, publishes the whole set and drops the partial
    ln -sf "$BIN/graph-build" bin/graph-build
    assert_rc 0 env PPDOCK_BIN="$PWD/bin" SLURM_TMPDIR="$PWD/scratch" \
        bash "$ROOT/slurm/graph-build.sbatch" "$ROOT/config/db5.yaml" dest/graphs "${sets[@]}"
    assert_contains "$OUT" "seeding from dest/graphs.partial"
    assert_contains "$OUT" "2 built, 2 unchanged, 0 failed"
    [ ! -e dest/graphs.partial ] || fail "dest/graphs.partial left after the whole set was published"
    assert_rc 0 cache-check dest/graphs
    assert_contains "$OUT" "sealed, 4 records, 4 ok, 0 problems"
}

run_tests
