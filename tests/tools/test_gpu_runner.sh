#!/usr/bin/env bash
# The GPU test program's runner (tests/gpu/gpu_steps.c): a step that kills the CUDA context,
# crashes or hangs is reported as failed and the steps after it still run, in a new process; the
# last line sums every process's counts; --steps refuses names no step has.
#
# The program: PPD_GPU_TEST_BIN, else the CPU emulation's (built when PPD_EMU_BIN is set, as by
# `make test`). scripts/gpu-check.sh runs this suite with the real GPU program too, where the
# injected fault is a real kernel's illegal address.
# shellcheck source=tests/tools/lib.sh
. "$(dirname "$0")/lib.sh"

GPU_PROG=${PPD_GPU_TEST_BIN:-}
[ -z "$GPU_PROG" ] && [ -n "${PPD_EMU_BIN:-}" ] && GPU_PROG="$TESTBIN/gpu-emu"
case $GPU_PROG in /* | "") ;; *) GPU_PROG="$ROOT/$GPU_PROG" ;; esac # the tests run elsewhere

# three cheap steps, the middle one made to die in the way named by $1
run_steps_dying() {
    OUT=$(PPD_TEST_GPU_STEP_TIMEOUT=10 PPD_TEST_GPU_FAULT=ops_odd PPD_TEST_GPU_FAULT_KIND=$1 \
        "$GPU_PROG" --steps arena_basics,ops_odd,adam_clip 2>&1)
    RC=$?
}

# the steps around the dead one ran and passed, the dead one failed once, the sum is right
assert_went_on() { # why-fragment
    [ "$RC" -eq 1 ] || fail "exit $RC, expected 1: $(printf '%s' "$OUT" | tail -3 | tr '\n' ' ')"
    assert_contains "$OUT" "PASS gpu_arena_alignment_budget_reset"
    assert_contains "$OUT" "PASS gpu_gaussian_smearing_matches_cpu_odd_sizes"
    assert_contains "$OUT" "FAIL gpu_step_ops_odd ($1"
    assert_contains "$OUT" "PASS gpu_adam_and_clip_match_cpu" "the step after the dead one"
    local pass fail
    pass=$(printf '%s\n' "$OUT" | grep -c '^PASS ')
    fail=$(printf '%s\n' "$OUT" | grep -c '^FAIL ')
    assert_eq "$fail" 1 "FAIL lines"
    assert_eq "$(printf '%s\n' "$OUT" | tail -1)" "$pass passed, 1 failed" "the last line"
}

if [ -n "$GPU_PROG" ] && [ -x "$GPU_PROG" ]; then
    test_gpu_runner_selected_steps_only() {
        assert_rc 0 "$GPU_PROG" --steps ops_odd,adam_clip
        assert_contains "$OUT" "-- step 3 ops_odd"
        assert_contains "$OUT" "PASS gpu_adam_and_clip_match_cpu"
        assert_not_contains "$OUT" "gpu_arena_alignment" "the steps not selected"
        assert_eq "$(printf '%s\n' "$OUT" | tail -1)" "4 passed, 0 failed" "the last line"
    }

    test_gpu_runner_goes_on_after_a_lost_context() {
        run_steps_dying fault
        assert_went_on "the CUDA context was lost"
    }

    test_gpu_runner_goes_on_after_a_crash() {
        run_steps_dying crash
        assert_went_on "the check process died of signal 6"
    }

    test_gpu_runner_kills_a_hung_step_and_goes_on() {
        local t0=$SECONDS
        run_steps_dying hang
        assert_went_on "no result after 10 s"
        [ $((SECONDS - t0)) -lt 40 ] || fail "took $((SECONDS - t0)) s for a 10 s step timeout"
    }

    test_gpu_runner_kills_a_child_that_hangs_before_its_first_step() {
        OUT=$(PPD_TEST_GPU_STEP_TIMEOUT=3 PPD_TEST_GPU_FAULT=start PPD_TEST_GPU_FAULT_KIND=hang \
            "$GPU_PROG" --steps adam_clip 2>&1)
        local rc=$?
        assert_eq "$rc" 1 "the exit status"
        assert_contains "$OUT" "FAIL gpu_checks (no result after 3 s: killed before the first step)"
        assert_eq "$(printf '%s\n' "$OUT" | tail -1)" "0 passed, 1 failed" "the last line"
    }

    # --no-fork (for compute-sanitizer, which watches one process): the same checks in-process,
    # and a lost context ends the run there
    test_gpu_runner_no_fork() {
        assert_rc 0 "$GPU_PROG" --no-fork --steps ops_odd,adam_clip
        assert_eq "$(printf '%s\n' "$OUT" | tail -1)" "4 passed, 0 failed" "the last line"
        OUT=$(PPD_TEST_GPU_FAULT=ops_odd "$GPU_PROG" --no-fork --steps ops_odd,adam_clip 2>&1)
        local rc=$?
        assert_eq "$rc" 1 "the exit status after a lost context"
        assert_contains "$OUT" "FAIL gpu_step_ops_odd (the CUDA context was lost"
        assert_not_contains "$OUT" "gpu_adam_and_clip" "the step after a lost context"
        assert_eq "$(printf '%s\n' "$OUT" | tail -1)" "3 passed, 1 failed" "the last line"
    }

    test_gpu_runner_refuses_unknown_step_names() {
        assert_rc 1 "$GPU_PROG" --steps adam_clip,adam_clips
        assert_contains "$OUT" "FAIL gpu_steps_option (--steps names 'adam_clips', which no step has)"
        assert_rc 2 "$GPU_PROG" --bogus
        assert_contains "$OUT" "usage:"
    }
fi

run_tests
