#!/usr/bin/env bash
# scripts/gpu-check.sh end to end on the CPU emulation (scripts/gpu-dry-run.sh): every step
# passes, the A/B against the baseline and the tables are filled, the sanitizer section runs.
# About 17 minutes on 2 cores, so only under `make test-long` (PPD_LONG=1) and where the
# emulated programs are built (PPD_EMU_BIN).
# shellcheck source=tests/tools/lib.sh
. "$(dirname "$0")/lib.sh"

if [ -n "${PPD_LONG:-}" ] && [ -n "$CUDA_BIN" ]; then
    test_gpu_check_dry_run_fills_every_table() {
        local out=$T/dry
        OUT=$out "$ROOT/scripts/gpu-dry-run.sh" >"$T/dry.log" 2>&1 ||
            fail "gpu-dry-run.sh exited $?: $(grep -a -E '^FAIL |exit [1-9]|FAILED' "$T/dry.log" | head -5 | tr '\n' ' ')"
        local s
        s=$(cat "$out/summary.txt")
        assert_contains "$s" "gpu-check: all steps passed"
        # a number on both sides of each A/B line that has a ratio
        local line
        for line in "ESM-2 650M bf16 tokens/s" "ESM-2 650M tf32 tokens/s" "esm-embed bf16 residues/s" \
            "train batch 16 steps/s" "ESM bf16 ms: attention"; do
            printf '%s\n' "$s" | grep -E "^$line +base [0-9.]+ +new [0-9.]+ +x[0-9.]+$" >/dev/null ||
                fail "the A/B line '$line' lacks a number or its ratio: $(printf '%s\n' "$s" | grep -F "$line")"
        done
        assert_contains "$s" "sanitize-race: ========= ERROR SUMMARY: 0 errors"
        assert_contains "$s" "sanitize-mem: ========= ERROR SUMMARY: 0 errors"
        assert_contains "$s" "TRAIN_BENCH run=batch16"
        assert_contains "$s" "precision=bf16 total_ms="
    }
fi

run_tests
