#!/usr/bin/env bash
# Builds the GPU binaries on this machine and packs them, with the shared libraries they need
# beyond glibc, libstdc++, zlib and CUDA's, for a GPU machine that has CUDA but not our build
# dependencies (LMDB, libyaml, xxHash, OpenBLAS headers and libraries) and no network to install
# them. There, scripts/gpu-check.sh runs the pack with PREBUILT=1 and never calls make:
#
#   here:  scripts/gpu-pack.sh                      (writes gpu-pack/ship/pack.tar.xz)
#   there: tar -xJf gpu-pack/ship/pack.tar.xz && LD_LIBRARY_PATH=$PWD/gpu-pack/lib \
#          BUILD=gpu-pack/build BIN=gpu-pack/bin PREBUILT=1 OUT=... scripts/gpu-check.sh
#
# The binaries must run on the GPU machine's glibc: build on a system whose glibc is no newer
# (Debian 12's 2.36 runs on Ubuntu 24.04's 2.39). CUDA's libraries (cuBLAS, cudart) are not packed
# (hundreds of MB): the GPU machine's toolkit must be of the same major version as nvcc here.
# Environment: CUDA_ARCH (default 90: H100/H200), JOBS (make -j, default nproc), PACK (default
# gpu-pack); BASELINE=<git revision> also builds that revision (in a temporary worktree) into
# the pack's baseline/ (bin/, build/tests/), for gpu-check's A/B: BASELINE=gpu-pack/baseline there.
# The pack also carries NVIDIA's compute-sanitizer (memcheck, racecheck) of nvcc's major CUDA
# version, from PyPI's nvidia-cuda-sanitizer-api wheel, as gpu-pack/sanitizer/compute-sanitizer
# for gpu-check's sanitizer steps (SANITIZER there); when pip cannot fetch it, the pack goes
# without and says so.
# Exit status: 0 when packed, 1 when a build or a library lookup failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-gpu-pack}
CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
make -j"$JOBS" BUILD="$PACK/build" BIN="$PACK/bin" EMU=0 CUDA_ARCH="$CUDA_ARCH" all tests
stage=$(mktemp -d)
trap 'rm -rf "$stage"; git worktree prune' EXIT
mkdir -p "$stage/$PACK/lib" "$PACK/ship"
# stage_build SRC DST: the tools and every program the GPU check runs (the GPU test, the
# benchmarks' programs, the tool tests' helpers) of build SRC (bin/, build/tests/) into DST
stage_build() {
    mkdir -p "$2/bin" "$2/build/tests"
    cp "$1"/bin/* "$2/bin/"
    local f
    for f in "$1"/build/tests/*; do
        if [ -f "$f" ] && [ -x "$f" ]; then cp "$f" "$2/build/tests/"; fi
    done
    strip --strip-debug "$2"/bin/* "$2"/build/tests/*
}
stage_build "$PACK" "$stage/$PACK"
if [ -n "${BASELINE:-}" ]; then
    src="$stage/baseline-src"
    git worktree add -q --detach "$src" "$BASELINE"
    make -C "$src" -j"$JOBS" BUILD=build BIN=bin EMU=0 CUDA_ARCH="$CUDA_ARCH" all tests
    stage_build "$src" "$stage/$PACK/baseline"
    git worktree remove --force "$src"
fi
# compute-sanitizer: the newest wheel of nvcc's major version (those before 13.3 lack the
# TreeLauncherSubreaper their launcher executes, so they cannot start a program), its directory
# without documentation and headers; unzipping loses the executable bits
cuda_major=$("${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
if pip download -q --no-deps -d "$stage/wheel" \
    "nvidia-cuda-sanitizer-api>=$cuda_major,<$((cuda_major + 1))" 2>/dev/null; then
    python3 -m zipfile -e "$stage"/wheel/*.whl "$stage/wheel/x"
    cs=$(dirname "$(find "$stage/wheel/x" -path '*/compute-sanitizer/TreeLauncherSubreaper' | head -1)")
    if [ -n "$cs" ] && [ -f "$cs/compute-sanitizer" ]; then
        rm -rf "$cs/docs" "$cs/include"
        chmod +x "$cs"/compute-sanitizer "$cs"/TreeLauncher* "$cs"/x86/TreeLauncher* 2>/dev/null || true
        cp -r "$cs" "$stage/$PACK/sanitizer"
    else
        echo "gpu-pack: the compute-sanitizer wheel has no TreeLauncherSubreaper: packed without it" >&2
    fi
    rm -rf "$stage/wheel"
else
    echo "gpu-pack: no compute-sanitizer $cuda_major.x from pip: the pack goes without it" >&2
fi
# the libraries outside glibc, libstdc++/libgcc, zlib and CUDA, by their sonames
find "$stage/$PACK" \( -path "$stage/$PACK/lib" -o -path "$stage/$PACK/sanitizer" \) -prune -o -type f -perm -u+x -exec ldd {} + 2>/dev/null |
    awk '$2 == "=>" {print $1, $3}' | sort -u |
    while read -r soname path; do
        case $soname in
            libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | libstdc++.so* | \
                libgcc_s.so* | libz.so* | libcu*) ;;
            *)
                [ "$path" = "not" ] && {
                    echo "gpu-pack: $soname not found" >&2
                    exit 1
                }
                cp -L "$path" "$stage/$PACK/lib/$soname"
                ;;
        esac
    done
tar -C "$stage" -cJf "$PACK/ship/pack.tar.xz" "$PACK"
ls -l "$PACK/ship/pack.tar.xz"
ls "$stage/$PACK/lib"
