# Shared helpers for the shell test suites (sourced, not run).
# A suite defines functions named test_*; `run_tests` calls each in a fresh temporary directory
# $T and prints "PASS name" or "FAIL name (reason)". Assertions call `fail "reason"` and return.
# shellcheck shell=bash
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$(cd "$ROOT" && cd "${PPD_BIN:-bin}" && pwd)
export TESTBIN
TESTBIN=$(cd "$ROOT" && cd "${PPD_TESTBIN:-build/tests}" 2>/dev/null && pwd || echo "$ROOT/build/tests")
export DATA="$ROOT/tests/data"
export PATH="$BIN:$PATH"

# Each test runs in a subshell: `fail` prints a marker that run_tests reads, and ends the test.
fail() { echo "__FAIL__ $*"; exit 1; }

# assert_rc EXPECTED command...  (runs the command, keeps its output in $OUT)
assert_rc() {
    local want=$1
    shift
    OUT=$("$@" 2>&1)
    local rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(printf '%s' "$OUT" | tail -3 | tr '\n' ' ')"
}
assert_contains() { # haystack needle [what]
    case "$1" in *"$2"*) return 0 ;; esac
    fail "${3:-output} lacks '$2': $(printf '%s' "$1" | tail -5 | tr '\n' ' ')"
}
assert_not_contains() {
    case "$1" in *"$2"*) fail "${3:-output} contains '$2'" ;; esac
    return 0
}
assert_eq() { [ "$1" = "$2" ] || fail "${3:-value} is '$1', expected '$2'"; }

run_tests() {
    local fn names
    names=$(declare -F | awk '{print $3}' | grep '^test_' | sort)
    for fn in $names; do
        if [ -n "${PPD_TEST_FILTER:-}" ] && [[ $fn != *"$PPD_TEST_FILTER"* ]]; then continue; fi
        T=$(mktemp -d "${TMPDIR:-/tmp}/ppdock-t.XXXXXX")
        ( cd "$T" && "$fn" ) >"$T.log" 2>&1
        local rc=$?
        if [ $rc -eq 0 ] && ! grep -q '^__FAIL__' "$T.log"; then
            echo "PASS ${fn#test_}"
        else
            local why
            why=$(grep '^__FAIL__' "$T.log" | head -1 | sed 's/^__FAIL__ //')
            [ -n "$why" ] || why="exited $rc: $(tail -3 "$T.log" | tr '\n' ' ')"
            echo "FAIL ${fn#test_} ($why)"
        fi
        rm -rf "$T" "$T.log"
    done
}
