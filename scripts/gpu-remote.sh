#!/usr/bin/env bash
# The whole device call of a GPU session, run on the lent machine from the repository root:
# unpacks scripts/gpu-pack.sh's pack, finds CUDA's libraries, runs scripts/gpu-check.sh on the
# prebuilt programs (with the A/B against gpu-pack/baseline when the pack has one), then leaves
# in $OUT what comes back: summary.txt and logs.tgz (every log and line file, not the synthetic
# set), since a device call returns at most 8 files. The summary's tables go to the terminal.
#
#   here:  BASELINE=<revision> scripts/gpu-pack.sh        (or without BASELINE)
#   there: OUT=... scripts/gpu-remote.sh                  (carry gpu-pack/ship)
#
# Environment: OUT (required), CHECK_TIMEOUT (seconds for the whole check, default 480),
# STEP_TIMEOUT (per step, default 200). Exit status: gpu-check's (0 all passed, 1 a failure,
# 3 no GPU, 124 out of time), 9 when the pack is missing.
set -u
cd "$(dirname "$0")/.." || exit 2
: "${OUT:?set OUT to the folder that comes back}"
tar -xJf gpu-pack/ship/pack.tar.xz || {
    echo "gpu-remote: no pack (carry gpu-pack/ship, made by scripts/gpu-pack.sh)"
    exit 9
}
export LD_LIBRARY_PATH=$PWD/gpu-pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# the CUDA runtime (linked) and cuBLAS (opened at run time, so ldd does not list it): the
# programs' run path names /usr/local/cuda/lib64; elsewhere, find them
add_lib_dir() {
    local d
    d=$(dirname "$(find /usr /opt -name "$1" 2>/dev/null | head -1)")
    echo "gpu-remote: $1 from $d"
    LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
}
ldd gpu-pack/bin/train | grep -q "libcudart.so.13 => not found" && add_lib_dir libcudart.so.13
gpu-pack/build/tests/cublas-load >/dev/null 2>&1 || add_lib_dir libcublas.so.13
work=/tmp/gpu-check
rm -rf "$work"
mkdir -p "$work"
base=()
[ -d gpu-pack/baseline ] && base=(BASELINE=gpu-pack/baseline)
[ -x gpu-pack/sanitizer/compute-sanitizer ] && base+=("SANITIZER=$PWD/gpu-pack/sanitizer/compute-sanitizer")
env OUT="$work" BUILD=gpu-pack/build BIN=gpu-pack/bin PREBUILT=1 "${base[@]}" \
    STEP_TIMEOUT="${STEP_TIMEOUT:-200}" timeout "${CHECK_TIMEOUT:-480}" scripts/gpu-check.sh \
    >"$work/all.log" 2>&1
rc=$?
echo "gpu-check: exit $rc"
cp "$work/summary.txt" "$OUT/" 2>/dev/null
(cd "$work" && find . -type f -size -16M -not -path './*/set/*' -not -path './*/graphs/*' \
    -not -path './*/esm/*' -not -path './esm-cache/*' -not -name '*.safetensors' |
    tar -czf "$OUT/logs.tgz" -T -)
tail -c 9000 "$work/summary.txt"
exit "$rc"
