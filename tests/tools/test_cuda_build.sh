#!/usr/bin/env bash
# The CUDA build on a machine without a GPU: cuBLAS is opened when a GPU engine starts, never at
# start-up (loading it leaves ~150 MB resident: CPU runs and --help paid for it). Tests that need
# a CUDA build, or the CPU emulation's, are defined only when that build is there.
# shellcheck source=tests/tools/lib.sh
source "$(dirname "$0")/lib.sh"

EMU_LOAD="$ROOT/${PPD_BUILD:-build}/emu/tests/cublas-load"

needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

if [ -x "$TESTBIN/cublas-load" ]; then
    test_cublas_is_opened_on_first_use() {
        assert_rc 0 "$TESTBIN/cublas-load"
        assert_contains "$OUT" "CUBLAS_LOAD before=absent from=libcublas.so."
        assert_contains "$OUT" " after=present"
    }
fi

if [ -x "$EMU_LOAD" ]; then
    test_emulated_programs_use_the_emulators_cublas() {
        # the emulator's functions, exported by the program; the real library is never opened
        assert_rc 0 "$EMU_LOAD"
        assert_contains "$OUT" "CUBLAS_LOAD before=absent from=this program after=absent "
    }
fi

if needed "$BIN/train" | grep -q '^libcudart'; then
    test_cuda_tools_do_not_link_cublas() {
        local t libs
        for t in train esm-embed; do
            libs=$(needed "$BIN/$t")
            assert_contains "$libs" "libcudart" "$t's libraries"
            assert_not_contains "$libs" "libcublas" "$t's libraries"
        done
    }
fi

run_tests
