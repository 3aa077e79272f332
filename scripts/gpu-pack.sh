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
# the libraries outside glibc, libstdc++/libgcc, zlib and CUDA, by their sonames
find "$stage/$PACK" -path "$stage/$PACK/lib" -prune -o -type f -perm -u+x -exec ldd {} + 2>/dev/null |
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
