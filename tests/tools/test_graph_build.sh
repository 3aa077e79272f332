#!/usr/bin/env bash
# graph-build end to end on tests/data/db5-mini: build, incremental reruns, bad inputs, a kill -9
# in the middle of a build and its resume, single pairs, options.
# shellcheck source=tests/tools/lib.sh
source "$(dirname "$0")/lib.sh"

MINI="$DATA/db5-mini"
gb_mini() { graph-build --set "data.data_path=$MINI" --set "data.data_file=$MINI/splits.csv" -j 2 "$@"; }

# A private copy of db5-mini whose files the test may change.
copy_mini() {
    mkdir -p ds/structures
    cp "$MINI"/structures/* ds/structures/
    cp "$MINI/splits.csv" ds/
    chmod u+w ds/structures/*
}
gb_copy() { graph-build --set data.data_path=ds --set data.data_file=ds/splits.csv -j 2 "$@"; }

test_builds_all_complexes_and_checks_clean() {
    assert_rc 0 gb_mini -o g --json
    assert_eq "$(grep -c '"event": "built"' <<<"$OUT")" 4 "built count"
    assert_contains "$OUT" '"id": "1R8S", "receptor_nodes": 160, "ligand_nodes": 187'
    assert_rc 0 cache-check g
    assert_contains "$OUT" "4 records, 4 ok, 0 problems"
    assert_rc 0 cache-check --inputs g
    assert_contains "$OUT" "inputs: 4 listed, 0 missing, 0 stale"
}

test_rerun_with_nothing_changed_does_no_work() {
    assert_rc 0 gb_mini -o g
    local before
    before=$(md5sum g/data.mdb | cut -d' ' -f1)
    assert_rc 0 gb_mini -o g --json
    assert_eq "$(grep -c '"event": "unchanged"' <<<"$OUT")" 4 "unchanged count"
    assert_not_contains "$OUT" '"event": "built"'
    # records are byte-identical to a fresh build elsewhere
    assert_rc 0 gb_mini -o g2
    assert_eq "$(cache-check --dump 1HIA g | md5sum)" "$(cache-check --dump 1HIA g2 | md5sum)" "record 1HIA"
    [ -n "$before" ] || fail "no data file"
}

test_changed_input_rebuilds_exactly_that_record() {
    copy_mini
    assert_rc 0 gb_copy -o g
    # a different file for 1FC2's ligand: its unbound structure
    cp ds/structures/1FC2_l_u.pdb.gz ds/structures/1FC2_l_b.pdb.gz
    assert_rc 4 cache-check --inputs --json g
    assert_contains "$OUT" '"key": "1FC2", "check": "stale"'
    assert_rc 0 gb_copy -o g --json
    assert_eq "$(grep '"event": "built"' <<<"$OUT" | grep -c '"id": "1FC2"')" 1 "1FC2 rebuilt"
    assert_eq "$(grep -c '"event": "built"' <<<"$OUT")" 1 "only one rebuilt"
    assert_rc 0 cache-check --inputs g
}

test_changed_parameter_rebuilds_every_record() {
    assert_rc 0 gb_mini -o g
    assert_rc 0 gb_mini -o g --set data.knn_size=8 --json
    assert_eq "$(grep -c '"event": "built"' <<<"$OUT")" 4 "rebuilt with k=8"
    assert_rc 0 cache-check g
    assert_rc 0 cache-check --dump 1FC2 g
    assert_contains "$OUT" '"num_nodes": 43, "num_edges": 344'
}

test_bad_structure_is_reported_and_the_rest_built() {
    copy_mini
    printf 'ATOM      1  CA  ALA A   1      1.000   2.000\n' | gzip > ds/structures/1HIA_l_b.pdb.gz
    : > ds/structures/1R0R_r_b.pdb.gz   # empty file
    rm ds/structures/1FC2_r_b.pdb.gz
    assert_rc 1 gb_copy -o g
    assert_contains "$OUT" "1HIA_l_b.pdb.gz:1:"
    assert_contains "$OUT" "1R0R: "
    assert_contains "$OUT" "1FC2: receptor file not found"
    assert_contains "$OUT" "1 built, 0 unchanged, 3 failed"
    assert_rc 0 cache-check g
    assert_contains "$OUT" "1 records, 1 ok"
    assert_rc 4 cache-check --inputs --json g
    assert_eq "$(grep -c '"check": "missing"' <<<"$OUT")" 3 "missing records"
}

test_wrong_data_paths_fail_at_start_naming_the_setting() {
    # the structures directory given as data.data_path: the fix is its parent
    assert_rc 2 graph-build --set "data.data_path=$MINI/structures/" --set "data.data_file=$MINI/splits.csv" -o g
    assert_contains "$OUT" "data.data_path '$MINI/structures/' (from --set) is the structures directory itself"
    assert_contains "$OUT" "set data.data_path=$MINI"
    assert_not_contains "$OUT" "file not found"
    assert_rc 2 graph-build --set data.data_path=nowhere --set "data.data_file=$MINI/splits.csv" -o g
    assert_contains "$OUT" "data.data_path 'nowhere' (from --set): no such directory"
    mkdir empty
    assert_rc 2 graph-build --set data.data_path=empty --set "data.data_file=$MINI/splits.csv" -o g
    assert_contains "$OUT" "data.data_path 'empty' (from --set) has no structures/ directory"
    assert_rc 2 graph-build --set "data.data_path=$MINI" --set data.data_file=none.csv -o g
    assert_contains "$OUT" "data.data_file 'none.csv' (from --set): no such file"
    # nothing was created for a run that could not start
    [ ! -e g ] || fail "a cache directory was created"
}

test_truncated_gzip_input_names_the_file() {
    copy_mini
    head -c 3000 "$MINI/structures/1R8S_r_b.pdb.gz" > ds/structures/1R8S_r_b.pdb.gz
    assert_rc 1 gb_copy -o g
    assert_contains "$OUT" "1R8S_r_b.pdb.gz: truncated gzip stream"
}

# A full file system, where the machine lets a test mount a small tmpfs of its own (a private
# mount namespace: unshare -m): the message says so, and a rerun with room resumes.
if unshare -m true 2>/dev/null; then
    test_a_full_file_system_is_named_and_a_rerun_with_room_resumes() {
        make_big_dataset big 400 X
        mkdir mnt
        # shellcheck disable=SC2016 # the script's $1, $2 and args are the inner shell's
        unshare -m bash -c '
            mount -t tmpfs -o size=3m tmpfs mnt || exit 99
            args=(--set data.data_path=big --set data.data_file=big/splits.csv --set cache.batch_mb=1 -j 2 -o mnt/g --json)
            "$1" "${args[@]}" >full.json 2>full.err; echo $? >full.rc
            "$2" --json mnt/g >check1.json; echo $? >check1.rc
            mount -o remount,size=64m mnt
            "$1" "${args[@]}" >again.json 2>again.err; echo $? >again.rc
            "$2" mnt/g >check2.txt; echo $? >check2.rc' _ "$BIN/graph-build" "$BIN/cache-check"
        [ -e full.rc ] || fail "the tmpfs could not be mounted"
        assert_eq "$(cat full.rc)" 3 "graph-build's exit status on a full file system"
        assert_contains "$(cat full.err)" "MiB free (data.mdb: "
        assert_contains "$(cat full.err)" "a full disk or quota shows as this error"
        assert_contains "$(tail -1 full.json)" '"exit": 3}'
        assert_eq "$(cat check1.rc)" 4 "cache-check's status on the cache left"
        local kept
        kept=$(json_number records_ok "$(cat check1.json)")
        [ "$kept" -gt 0 ] || fail "no batch was kept before the file system filled"
        assert_eq "$(grep -c '"event": "built"' full.json)" "$kept" "complexes reported built"
        assert_contains "$(cat full.err)" "committed before it"
        assert_eq "$(cat again.rc)" 0 "the rerun's exit status"
        assert_contains "$(cat again.json)" "\"built\": $((400 - kept)), \"unchanged\": $kept, \"failed\": 0"
        assert_contains "$(cat check2.txt)" "sealed, 400 records, 400 ok, 0 problems"
    }
fi

test_write_failure_keeps_the_committed_batches_and_a_rerun_resumes() {
    # data.mdb hits a 1.6 MiB file size limit (SIGXFSZ ignored, so the write comes up short as on
    # a full disk) after one 1 MiB batch: graph-build stops with exit 3 and says why and what is
    # kept; the cache is unsealed with its first batch intact, and a rerun builds only the rest
    make_big_dataset big 40 X
    local args=(--set data.data_path=big --set data.data_file=big/splits.csv --set cache.batch_mb=1 -j 2 -o g)
    assert_rc 3 bash -c 'trap "" XFSZ; ulimit -f 1600; exec graph-build "$@"' graph-build "${args[@]}" --json
    local claimed
    claimed=$(grep -c '"event": "built"' <<<"$OUT")
    assert_contains "$(grep '^{"error"' <<<"$OUT")" '"status": "PPD_ERR_IO", "exit": 3}' "--json's error line"
    assert_contains "$OUT" "committing a batch: Input/output error; data.mdb is at the file size limit (ulimit -f: 1.6 MiB)"
    assert_contains "$OUT" "the 1 batch committed before it is kept: make room and rerun to resume"
    assert_rc 4 cache-check --json g
    assert_contains "$OUT" '"check": "unsealed"'
    assert_contains "$OUT" "stopped by an error"
    assert_not_contains "$OUT" '"check": "checksum"'
    local kept
    kept=$(grep -o '"records_ok": [0-9]*' <<<"$OUT" | grep -o '[0-9]*$')
    if [ "${kept:-0}" -le 0 ] || [ "$kept" -ge 40 ]; then
        fail "records kept after the failed commit: '$kept'"
    fi
    # "built" was said of exactly the complexes whose batch was committed
    assert_eq "$claimed" "$kept" "built events of the failed run"
    assert_rc 4 cache-check g
    assert_contains "$OUT" "rerun the build stage to complete it"
    assert_rc 0 graph-build "${args[@]}" --json
    assert_eq "$(grep -c '"event": "unchanged"' <<<"$OUT")" "$kept" "records kept, not rebuilt"
    assert_eq "$(grep -c '"event": "built"' <<<"$OUT")" "$((40 - kept))" "records built on the rerun"
    assert_rc 0 cache-check --inputs g
    assert_contains "$OUT" "40 records, 40 ok, 0 problems"
}

test_sigterm_commits_what_is_built_and_a_rerun_completes() {
    # 3,000 complexes, commits every ~1 MB; SIGTERM once the first batches are committed
    make_big_dataset big 3000 S
    local args=(--set data.data_path=big --set data.data_file=big/splits.csv --set cache.batch_mb=1 -j 2 -o g)
    graph-build "${args[@]}" --json >out.json 2>err.txt &
    local pid=$!
    signal_after_growth "$pid" g/data.mdb 1500000
    # the same stop twice at once (SLURM signals every process, a batch script passes it on)
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    local rc=$?
    OUT=$(cat out.json err.txt)
    [ "$rc" -eq 1 ] || fail "graph-build exited $rc after SIGTERM, expected 1 (stopped): $(tail -2 err.txt)"
    assert_contains "$OUT" '"stopped": true'
    assert_contains "$OUT" "stopped by a signal: the complexes done are committed"
    local built records
    built=$(json_number built "$(grep '"event": "summary"' out.json)")
    assert_eq "$(grep -c '"event": "built"' out.json)" "$built" "built events"
    [ "$built" -gt 0 ] || fail "nothing built before the stop"
    [ "$built" -lt 3000 ] || fail "all 3000 built before the stop"
    # what it reported built is what the cache holds, and the cache is not called complete
    assert_rc 4 cache-check --json g
    assert_contains "$OUT" '"check": "unsealed"'
    records=$(json_number records_ok "$OUT")
    assert_eq "$records" "$built" "records in the stopped cache"
    assert_eq "$(grep -c '"check"' <<<"$OUT")" 1 "problems besides unsealed"
    assert_rc 0 graph-build "${args[@]}" --json
    assert_contains "$OUT" "\"built\": $((3000 - built)), \"unchanged\": $built, \"failed\": 0"
    assert_contains "$OUT" '"stopped": false'
    assert_rc 0 cache-check g
    assert_contains "$OUT" "sealed, 3000 records, 3000 ok, 0 problems"
}

test_kill_9_mid_build_then_resume_completes_the_cache() {
    # 400 complexes (symlinks to the four real ones), commits every ~1 MB
    make_big_dataset big 400 X
    local args=(--set data.data_path=big --set data.data_file=big/splits.csv --set cache.batch_mb=1 -j 2 -o g)
    local killed=0 delay rc
    for delay in 0.05 0.15 0.3; do
        rm -rf g
        graph-build "${args[@]}" >/dev/null 2>&1 &
        local pid=$!
        sleep "$delay"
        if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); fi
        wait "$pid" 2>/dev/null
        if [ -e g/data.mdb ]; then
            # the half-built cache is never mistaken for a finished one, and nothing committed is bad
            rc=0
            OUT=$(cache-check --json g 2>&1) || rc=$?
            if [ "$rc" -eq 0 ]; then
                assert_contains "$OUT" '"sealed": true'   # the kill landed after the seal
            else
                assert_eq "$rc" 4 "cache-check exit status after kill -9"
                # also when the kill landed before the first commit (nothing committed)
                assert_contains "$OUT" '"check": "unsealed"'
                assert_not_contains "$OUT" '"check": "structure"'
                assert_not_contains "$OUT" '"check": "checksum"'
                assert_not_contains "$OUT" '"check": "header"'
            fi
        fi
        assert_rc 0 graph-build "${args[@]}" --json
        local built unchanged
        built=$(grep -c '"event": "built"' <<<"$OUT")
        unchanged=$(grep -c '"event": "unchanged"' <<<"$OUT")
        assert_eq "$((built + unchanged))" 400 "records after resume"
        assert_rc 0 cache-check --inputs g
        assert_contains "$OUT" "400 records, 400 ok, 0 problems"
    done
    [ "$killed" -ge 1 ] || fail "graph-build finished before every kill (machine too fast for the delays)"
}

test_single_pair_mode() {
    assert_rc 0 graph-build --receptor "$MINI/structures/1FC2_r_u.pdb.gz" --ligand "$MINI/structures/1FC2_l_u.pdb.gz" --id 1FC2u -o g
    assert_rc 0 cache-check --inputs g
    assert_contains "$OUT" "inputs: 1 listed, 0 missing"
    assert_rc 0 cache-check --dump 1FC2u g
    assert_contains "$OUT" '"split": ""'
    assert_rc 2 graph-build --receptor x.pdb --id y -o g
    assert_contains "$OUT" "needs all of --receptor, --ligand and --id"
}

test_use_unbound_reads_the_u_files() {
    mkdir -p ub/structures
    cp "$MINI"/structures/1FC2_?_u.pdb.gz ub/structures/
    printf 'path,split\n1FC2,test\n' > ub/splits.csv
    assert_rc 0 graph-build --set data.data_path=ub --set data.data_file=ub/splits.csv --set data.use_unbound=true -o g
    assert_rc 0 cache-check --dump 1FC2 g
    assert_contains "$OUT" '"split": "test"'
    assert_rc 1 graph-build --set data.data_path=ub --set data.data_file=ub/splits.csv -o g2
    assert_contains "$OUT" "1FC2_r_b.pdb"
}

test_config_errors_and_options() {
    printf 'data:\n  knn_size: many\n' > bad.yaml
    assert_rc 2 graph-build -c bad.yaml -o g
    assert_contains "$OUT" "bad.yaml:2"
    assert_contains "$OUT" "data.knn_size"
    assert_rc 2 gb_mini -o g --set data.resolution=atom
    assert_contains "$OUT" "only 'residue'"
    assert_rc 2 graph-build -j 0
    assert_rc 0 graph-build --version
    assert_contains "$OUT" "graph-build 0."
    assert_rc 0 graph-build --help
    assert_contains "$OUT" "--receptor"
    assert_rc 0 graph-build -c "$ROOT/config/demo.yaml" --print-config
    assert_contains "$OUT" "knn_size"
    # DiffDock-PP's own config loads as it is; paths overridden on the command line
    assert_rc 0 gb_mini -c "$ROOT/tests/data/config/diffdock-pp/db5_esm.yaml" -o g -q
}

test_progress_bar_only_on_a_terminal() {
    # a terminal (script(1) gives the tool a pty): count, rate, ETA and memory are drawn
    OUT=$(script -qec "graph-build --set data.data_path=$MINI --set data.data_file=$MINI/splits.csv -j 1 -o g" /dev/null)
    assert_contains "$OUT" "graph-build 4/4"
    assert_contains "$OUT" "ETA"
    assert_contains "$OUT" "mem "
    # not a terminal: no bar, no escape codes
    assert_rc 0 gb_mini -o g2
    assert_not_contains "$OUT" "ETA"
    assert_not_contains "$OUT" $'\033'
}

run_tests
