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
# PPD_EMU_BIN: a directory with the CUDA builds of esm-embed and train (`make test`: the CPU
# emulation's; scripts/gpu-check.sh: the real build), relative to the root or absolute; as an
# absolute path here, empty when unset
export CUDA_BIN=""
if [ -n "${PPD_EMU_BIN:-}" ]; then
    CUDA_BIN=$(cd "$ROOT" 2>/dev/null && cd "$PPD_EMU_BIN" 2>/dev/null && pwd) ||
        echo "FAIL cuda_bin_dir (PPD_EMU_BIN=$PPD_EMU_BIN is not a directory: its tests are not run)"
fi
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

# make_big_dataset DIR N PREFIX: a data set of N complexes named PREFIX000.. whose structures are
# symlinks to the four db5-mini ones, in turn (for tests that need many records).
make_big_dataset() {
    local dir=$1 n=$2 prefix=$3 i id src
    mkdir -p "$dir/structures"
    printf 'path,split\n' > "$dir/splits.csv"
    for i in $(seq 0 $((n - 1))); do
        id=$(printf '%s%03d' "$prefix" "$i")
        src=$(sed -n "$((i % 4 + 2))p" "$DATA/db5-mini/splits.csv" | cut -d, -f1)
        ln -s "$DATA/db5-mini/structures/${src}_r_b.pdb.gz" "$dir/structures/${id}_r_b.pdb.gz"
        ln -s "$DATA/db5-mini/structures/${src}_l_b.pdb.gz" "$dir/structures/${id}_l_b.pdb.gz"
        echo "$id,train" >> "$dir/splits.csv"
    done
}

# signal_after_growth PID FILE BYTES: waits (at most 60 s) until FILE is larger than BYTES (a
# cache's first commits) or the process has ended, then sends it SIGTERM.
signal_after_growth() {
    local pid=$1 file=$2 bytes=$3 i
    for i in $(seq 3000); do
        kill -0 "$pid" 2>/dev/null || return 0
        [ "$(stat -c %s "$file" 2>/dev/null || echo 0)" -gt "$bytes" ] && break
        sleep 0.02
    done
    kill -TERM "$pid" 2>/dev/null
    return 0
}

# json_number NAME TEXT: the number after "NAME": in TEXT (the first one)
json_number() { grep -o "\"$1\": [0-9]*" <<<"$2" | head -1 | grep -o '[0-9]*$'; }

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
