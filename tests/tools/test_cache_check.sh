#!/usr/bin/env bash
# cache-check on a real graph cache: every fault class is found and named with fsck's exit codes,
# --repair drops exactly the bad records, and graph-build then rebuilds exactly those.
# shellcheck source=tests/tools/lib.sh
source "$(dirname "$0")/lib.sh"

MINI="$DATA/db5-mini"
TAMPER="$TESTBIN/cache-tamper"
gb() { graph-build --set "data.data_path=$MINI" --set "data.data_file=$MINI/splits.csv" -j 2 "$@"; }

# damage -> check names KEY/CHECK with exit 4 -> repair exits 1 -> rebuild exactly KEY -> clean
fault_cycle() { # key check tamper-args...
    local key=$1 check=$2
    shift 2
    assert_rc 0 gb -o g
    "$TAMPER" g "$@" || fail "tamper $*"
    assert_rc 4 cache-check --json g
    assert_contains "$OUT" "\"key\": \"$key\", \"check\": \"$check\""
    assert_rc 1 cache-check --repair g
    assert_contains "$OUT" "repaired"
    ls -d g.damaged.* >/dev/null 2>&1 || fail "damaged original not kept"
    assert_rc 0 cache-check --json g
    assert_contains "$OUT" '"dropped_pending": 1'
    assert_rc 0 gb -o g --json
    assert_eq "$(grep '"event": "built"' <<<"$OUT" | cut -d'"' -f8 | tr '\n' ' ')" "$key " "rebuilt records"
    assert_rc 0 cache-check --inputs --json g
    assert_contains "$OUT" '"records_ok": 4, "problems": 0'
    assert_contains "$OUT" '"dropped_pending": 0'
}

test_bit_flip_in_a_value() { fault_cycle 1HIA checksum flip 1HIA 5000; }
test_bit_flip_in_a_record_header() { fault_cycle 1R0R header flip 1R0R 2; }
test_deleted_record() { fault_cycle 1R8S missing-record delete 1R8S; }
test_garbage_in_place_of_a_value() { fault_cycle 1FC2 header garbage 1FC2; }
test_value_stored_under_the_wrong_key() { fault_cycle 1R8S checksum swap 1HIA 1R8S; }

test_unsealed_cache_is_reported_and_repair_seals() {
    assert_rc 0 gb -o g
    "$TAMPER" g set-meta sealed 0
    assert_rc 4 cache-check g
    assert_contains "$OUT" "unsealed"
    assert_contains "$OUT" "NOT sealed"
    assert_rc 1 cache-check --repair g
    assert_rc 0 cache-check g
}

test_cache_killed_before_its_first_commit_is_unsealed_and_rebuilt() {
    # data.mdb exists but no transaction was ever committed (graph-build killed right after
    # opening it): nothing is lost, so it is "unsealed" with the rerun as the fix, not damage
    "$TAMPER" g never-committed || fail "tamper never-committed"
    assert_rc 4 cache-check --json g
    assert_contains "$OUT" '"check": "unsealed"'
    assert_contains "$OUT" '"repairable": false'
    assert_contains "$OUT" '"sealed": false, "records": 0'
    assert_contains "$OUT" '"unfixable": 0'
    assert_rc 4 cache-check g
    assert_contains "$OUT" "before its first commit; rerun it"
    assert_contains "$OUT" "NOT sealed"
    assert_not_contains "$OUT" "cache-check --repair"
    assert_rc 4 cache-check --repair g   # nothing to keep: no copy, no swap
    ls -d g.repair.* g.damaged.* >/dev/null 2>&1 && fail "repair wrote a copy of an empty cache"
    assert_rc 4 cache-check --dump 1HIA g
    assert_contains "$OUT" "nothing was committed to this cache"
    assert_rc 0 gb -o g
    assert_rc 0 cache-check --inputs g
    assert_contains "$OUT" "4 records, 4 ok, 0 problems"
}

test_a_data_set_moved_away_is_one_problem_not_one_per_record() {
    mkdir -p ds/structures
    cp "$MINI"/structures/*_b.pdb.gz ds/structures/
    cp "$MINI/splits.csv" ds/
    assert_rc 0 graph-build --set data.data_path=ds --set data.data_file=ds/splits.csv -o g
    rm -r ds/structures
    assert_rc 4 cache-check --inputs g
    assert_contains "$OUT" "ds/structures: no such directory: the sources of the 4 complexes"
    assert_eq "$(grep -c 'input-error' <<<"$OUT")" 1 "input-error lines"
    assert_contains "$OUT" "4 records, 4 ok, 1 problem; inputs: 4 listed, 0 missing, 0 stale"
    # one structure gone is still that record's own problem
    mkdir ds/structures
    cp "$MINI"/structures/*_b.pdb.gz ds/structures/
    rm ds/structures/1R8S_l_b.pdb.gz
    assert_rc 4 cache-check --inputs --json g
    assert_eq "$(grep -c '"check": "input-error"' <<<"$OUT")" 1 "input-error records"
    assert_contains "$OUT" '"key": "1R8S", "check": "input-error"'
}

test_wrong_schema_version_is_not_repairable() {
    assert_rc 0 gb -o g
    "$TAMPER" g set-meta schema ppdock-cache/7
    assert_rc 4 cache-check --json g
    assert_contains "$OUT" '"check": "schema"'
    assert_rc 4 cache-check --repair g
    assert_contains "$OUT" "cannot be repaired"
}

test_meta_damage_is_found_and_repaired() {
    assert_rc 0 gb -o g
    "$TAMPER" g set-meta count 5
    assert_rc 4 cache-check --json g
    assert_contains "$OUT" '"check": "meta"'
    assert_rc 1 cache-check --repair g
    assert_rc 0 cache-check g
}

test_truncated_data_file_is_found_without_a_crash_and_repaired() {
    # 200 complexes (symlinks to the four real ones), so the surviving half holds records
    make_big_dataset big 200 T
    local args=(--set data.data_path=big --set data.data_file=big/splits.csv --set cache.batch_mb=2 -j 2 -o g)
    assert_rc 0 graph-build "${args[@]}"
    local size
    size=$(stat -c %s g/data.mdb)
    truncate -s $((size * 6 / 10)) g/data.mdb
    assert_rc 4 cache-check --json g
    assert_contains "$OUT" '"check": "truncated"'
    assert_rc 4 cache-check --dump T001 g   # a reader gets an error, not SIGBUS
    assert_contains "$OUT" "truncated"
    assert_rc 1 cache-check --repair --json g
    assert_rc 0 cache-check --json g
    local kept pending
    kept=$(grep -o '"records_ok": [0-9]*' <<<"$OUT" | grep -o '[0-9]*$')
    pending=$(grep -o '"dropped_pending": [0-9]*' <<<"$OUT" | grep -o '[0-9]*$')
    [ "$kept" -gt 0 ] || fail "no record survived the truncation"
    [ "$((kept + pending))" -le 200 ] || fail "kept $kept + dropped $pending > 200"
    assert_rc 0 graph-build "${args[@]}" --json
    # exactly the records that did not survive are rebuilt
    assert_eq "$(grep -c '"event": "built"' <<<"$OUT")" "$((200 - kept))" "records rebuilt"
    assert_rc 0 cache-check --inputs g
    assert_contains "$OUT" "200 records, 200 ok, 0 problems"
}

test_exit_codes_usage_and_operational() {
    assert_rc 16 cache-check
    assert_rc 16 cache-check --bogus g
    assert_rc 8 cache-check does-not-exist
    # in --json, the cache that could not be checked is in the stream too
    assert_rc 8 cache-check --json does-not-exist
    assert_contains "$OUT" '{"dir": "does-not-exist", "error": "does-not-exist: no such cache directory", "status": "PPD_ERR_NOTFOUND"}'
    mkdir notcache
    printf 'junk' > notcache/data.mdb
    assert_rc 4 cache-check notcache
    assert_contains "$OUT" "not an LMDB file"
    assert_rc 0 gb -o g
    assert_rc 8 cache-check --dump NOPE g
    # several caches: codes are or-ed
    "$TAMPER" g delete 1FC2
    assert_rc 0 gb -o g2
    assert_rc 4 cache-check g g2
}

test_dump_has_the_documented_fields() {
    assert_rc 0 gb -o g
    assert_rc 0 cache-check --dump 1FC2 g
    local f
    for f in '"receptor": {' '"ligand": {' '"pos": [[' '"sequence": "FNKEQQNAFYEILHLPNLNEEQRNGFIQSLKDDPSQSANLLAE"' \
        '"edge_index": [[' '"center": [' '"num_nodes": 43, "num_edges": 860'; do
        assert_contains "$OUT" "$f"
    done
    python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["receptor"]; assert len(r["edge_index"])==2 and len(r["edge_index"][0])==860 and len(r["pos"])==43' <<<"$OUT" 2>/dev/null \
        || ! command -v python3 >/dev/null || fail "dump is not valid JSON with the documented shapes"
}

test_publish_is_a_checked_compacting_copy() {
    assert_rc 0 gb -o g
    assert_rc 0 cache-check --publish shared/graphs g
    assert_rc 0 cache-check shared/graphs
    assert_contains "$OUT" "4 records, 4 ok"
    chmod -R a-w shared
    assert_rc 0 cache-check shared/graphs   # read-only published cache: NOLOCK fallback
    chmod -R u+w shared
    "$TAMPER" g flip 1HIA 4000
    assert_rc 4 cache-check --publish shared/graphs g
    assert_contains "$OUT" "not publishing"
}

run_tests
