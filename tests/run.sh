#!/usr/bin/env bash
# The test runner behind `make test`: the C unit tests, then every shell suite in tests/tools/.
# Each prints "PASS name" / "FAIL name (why)" lines; this script counts them and ends with
# "N passed, N failed". A suite that dies without reporting counts as one failure.
# Environment (set by the Makefile): PPD_BIN (tools), PPD_TESTBIN (test programs).
set -u
cd "$(dirname "$0")/.." || exit 2
: "${PPD_BIN:=bin}" "${PPD_TESTBIN:=build/tests}"
export PPD_BIN PPD_TESTBIN
log=$(mktemp "${TMPDIR:-/tmp}/ppdock-tests.XXXXXX")
trap 'rm -f "$log"' EXIT

run_suite() { # name command...
    local name=$1
    shift
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -E '^(PASS|FAIL) ' | tee -a "$log"
    if [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -q '^FAIL '; then
        echo "FAIL $name (exited $rc without reporting)" | tee -a "$log"
        printf '%s\n' "$out" | tail -20 | sed 's/^/    /'
    elif [ $rc -ne 0 ] || [ -n "${PPD_TEST_VERBOSE:-}" ]; then
        printf '%s\n' "$out" | grep -v -E '^(PASS|FAIL) ' | tail -40 | sed 's/^/    /'
    fi
}

run_suite unit "$PPD_TESTBIN/unit-tests" "$@"
# the CUDA sources on the CPU emulation (built when the CUDA headers are installed and EMU is
# not 0: the Makefile then names the emulated tools' directory in PPD_EMU_BIN)
if [ -n "${PPD_EMU_BIN:-}" ] && [ -x "$PPD_TESTBIN/gpu-emu" ]; then
    run_suite emu-selftest "$PPD_TESTBIN/emu-selftest"
    run_suite gpu-emu "$PPD_TESTBIN/gpu-emu"
fi
for suite in tests/tools/test_*.sh; do
    [ -e "$suite" ] || continue
    run_suite "$(basename "$suite" .sh)" bash "$suite"
done

pass=$(grep -c '^PASS ' "$log")
fail=$(grep -c '^FAIL ' "$log")
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
