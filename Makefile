# ppdock — one entry point.
#
#   make              static library build/libppdock.a and the tools in bin/
#                     (plus the CUDA part of lib when nvcc is found; CUDA=0 forces CPU-only)
#   make test         unit, golden, fault-injection and end-to-end tests (prints "N passed, N failed")
#   make SANITIZE=1 test   the same under ASan+UBSan (separate build tree: build/san)
#   make test-gpu     every CUDA op against its CPU twin (needs a GPU)
#   make demo         graph-build and cache-check on the bundled sample
#   make bench        timings on ../shared/data/db5.5 (not a test)
#   make fuzz         libFuzzer on the PDB reader (FUZZ_SECONDS, default 180)
#   make format / format-check / lint
#
# Dependencies are Debian packages: scripts/install-deps.sh installs them.

VERSION := 0.1.0

CC      ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD   ?= build/san
BIN     ?= build/san/bin
CUDA    := 0
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     ?= -O1 -g
else
BUILD   ?= build
BIN     ?= bin
SANFLAGS :=
OPT     ?= -O2 -g
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-format-truncation
CPPFLAGS += -Iinclude -D_GNU_SOURCE -DPPD_VERSION='"$(VERSION)"' $(shell pkg-config --cflags openblas)
CFLAGS  += -std=c11 -ffp-contract=off $(OPT) $(WARN) $(SANFLAGS) -MMD -MP -pthread
LDFLAGS += $(SANFLAGS) -pthread
LDLIBS  += -llmdb -lyaml -lxxhash -lz $(shell pkg-config --libs openblas) -lm

# ---- optional features: detected, announced, switchable -------------------------------------
CUDA_HOME ?= /usr/local/cuda
ifneq ($(CUDA),0)
NVCC := $(shell command -v nvcc 2>/dev/null || { test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc; })
endif
HASH := \#
have_header = $(shell printf '$(HASH)include <$(1)>\nint main(void){return 0;}\n' | \
                $(CC) -x c $(2) -fsyntax-only - >/dev/null 2>&1 && echo 1)

OMP := $(shell printf 'int main(void){return 0;}\n' | $(CC) -fopenmp -x c - -o /dev/null >/dev/null 2>&1 && echo 1)
ifeq ($(NO_OMP),1)
OMP :=
endif
ifeq ($(OMP),1)
CFLAGS  += -fopenmp
LDFLAGS += -fopenmp
endif
OPENBLAS := $(shell pkg-config --exists openblas 2>/dev/null && echo 1)
MPI      := $(shell command -v mpicc >/dev/null 2>&1 && echo 1)

ifneq ($(NVCC),)
CUDNN := $(call have_header,cudnn.h,-I$(CUDA_HOME)/include)
NCCL  := $(call have_header,nccl.h,-I$(CUDA_HOME)/include)
CUDA_ARCH ?= 80 90
# No --use_fast_math: CUDA's expf/sinf/cosf must stay within 2 ulp so that every kernel agrees with
# its CPU twin within a few ulp (include/ppdock/kernels/hd.h). -MMD -MP: header dependencies.
NVCCFLAGS := -O2 -std=c++17 -MMD -MP -Iinclude -I$(CUDA_HOME)/include -DPPD_VERSION='"$(VERSION)"' \
             $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
             -gencode arch=compute_$(lastword $(CUDA_ARCH)),code=compute_$(lastword $(CUDA_ARCH)) \
             -Xcompiler -Wall,-Wextra,-Werror,-Wno-unused-parameter
# cuBLAS is opened at run time (lib/nn/cuda/gemm.cu), not linked: the run path finds it there
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -ldl
endif

# The CUDA sources compiled by g++ against the CPU emulation in tests/emu (make test-emu, part of
# make test): needs only the CUDA headers, not nvcc or a GPU. Not under the sanitizers: ASan
# cannot follow the emulator's fiber stack switches. EMU=0 turns it off.
CXX ?= g++
ifeq ($(origin CXX),default)
CXX := g++
endif
ifneq ($(SANITIZE),1)
ifneq ($(EMU),0)
EMU := $(if $(call have_header,cublas_v2.h,-I$(CUDA_HOME)/include),1,)
endif
endif
ifeq ($(EMU),0)
override EMU :=
endif
# the emulated programs export the emulator's cuBLAS, which lib/nn/cuda/gemm.cu looks up at run
# time (it never opens the real library under the emulation)
EMU_LDFLAGS := -Wl,--export-dynamic-symbol=cublas*
EMU_CXXFLAGS := -std=c++17 -O1 -g -ffp-contract=off -U_FORTIFY_SOURCE -MMD -MP -Iinclude \
                -I$(CUDA_HOME)/include $(shell pkg-config --cflags openblas) \
                -DPPD_VERSION='"$(VERSION)"' -Wall -Wextra -Werror -Wno-unused-parameter -Wno-unknown-pragmas

# Required libraries: stop early with the one command that fixes it.
ifeq ($(filter deps clean format format-check lint,$(MAKECMDGOALS)),)
MISSING := $(strip $(foreach h,lmdb.h yaml.h xxhash.h zlib.h,$(if $(call have_header,$(h),),,$(h))))
ifneq ($(MISSING),)
$(error missing headers: $(MISSING). Install the dependencies with: scripts/install-deps.sh (as root), or make deps)
endif
endif

ifndef PPD_ANNOUNCED
export PPD_ANNOUNCED := 1
$(info ppdock $(VERSION): build=$(BUILD) cc=$(CC)$(if $(filter 1,$(SANITIZE)), sanitizers=address+undefined))
$(info $(if $(NVCC),✓ CUDA    $(NVCC) (arch $(CUDA_ARCH)),✗ CUDA    not built$(if $(filter 0,$(CUDA)), (CUDA=0),: nvcc not found)))
$(info $(if $(EMU),✓ CUDA emulation (make test-emu: the .cu sources on the CPU),✗ CUDA emulation: no CUDA headers))
$(info $(if $(CUDNN),✓ cuDNN,✗ cuDNN)   $(if $(NCCL),✓ NCCL,✗ NCCL)   $(if $(MPI),✓ MPI,✗ MPI)   $(if $(OMP),✓ OpenMP,✗ OpenMP)   $(if $(OPENBLAS),✓ OpenBLAS,✗ OpenBLAS))
endif

# ---- sources --------------------------------------------------------------------------------
LIB_SRC  := $(sort $(wildcard lib/core/*.c lib/io/*.c lib/cache/*.c lib/dock/*.c lib/nn/*.c lib/esm/*.c lib/train/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libppdock.a
CU_SRC   := $(sort $(wildcard lib/nn/cuda/*.cu lib/esm/*.cu lib/dock/*.cu))
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.o)
CULIB    := $(BUILD)/libppdock_cuda.a

TOOLS    := graph-build cache-check esm-embed train
TOOL_BIN := $(TOOLS:%=$(BIN)/%)
# tools with a CUDA engine: built with -DPPD_HAVE_CUDA and linked with libppdock_cuda.a when nvcc
# is found, and again on the CPU emulation for the tests ($(BUILD)/emu/bin)
CUDA_TOOLS := esm-embed train
EMU_TOOL_BIN := $(CUDA_TOOLS:%=$(BUILD)/emu/bin/%)

UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(BUILD)/tests/unit-tests
# test code shared by the unit tests and the GPU tests (golden cases)
TEST_COMMON_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tests/common/*.c)))
HELPER_SRC := $(sort $(wildcard tests/helpers/*.c))
HELPER_BIN := $(HELPER_SRC:tests/helpers/%.c=$(BUILD)/tests/%)
GPU_BIN  := $(BUILD)/tests/gpu
EMU_OBJ  := $(CU_SRC:%.cu=$(BUILD)/emu/%.o) $(BUILD)/emu/cuda_emu.o
# programs for scripts/gpu-check.sh: esm-bench (ESM-2 throughput), score-plan (train's device
# memory plan for a graph cache); cublas-load (cuBLAS opened on first use) runs in make test
GPU_PROGS := esm-bench score-plan cublas-load
EMU_BIN  := $(BUILD)/tests/gpu-emu $(BUILD)/tests/emu-selftest $(EMU_TOOL_BIN) \
            $(GPU_PROGS:%=$(BUILD)/emu/tests/%)

.SECONDEXPANSION:
.PHONY: all lib tools tests test test-long test-gpu test-emu demo bench fuzz format format-check lint clean deps
all: lib tools $(if $(NVCC),$(CULIB) $(GPU_BIN) $(GPU_PROGS:%=$(BUILD)/tests/%))
lib: $(LIB)
tools: $(TOOL_BIN)
tests: $(UNIT_BIN) $(HELPER_BIN) $(TOOL_BIN) $(if $(EMU),$(EMU_BIN)) $(if $(NVCC),$(BUILD)/tests/cublas-load)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CULIB): $(CU_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN)/%: $(BUILD)/tools/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

ifneq ($(NVCC),)
$(CUDA_TOOLS:%=$(BUILD)/tools/%.o): CPPFLAGS += -DPPD_HAVE_CUDA
$(CUDA_TOOLS:%=$(BIN)/%): $(BIN)/%: $(BUILD)/tools/%.o $(CULIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(CULIB) $(LIB) $(LDLIBS) $(CUDA_LDLIBS) -lstdc++ -o $@
endif

$(BUILD)/emu/tools/%.o: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -DPPD_HAVE_CUDA $(CFLAGS) -c $< -o $@

$(BUILD)/emu/bin/%: $(BUILD)/emu/tools/%.o $(EMU_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $(EMU_LDFLAGS) $< $(EMU_OBJ) $(LIB) $(LDLIBS) -o $@

$(UNIT_BIN): $(UNIT_OBJ) $(TEST_COMMON_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(UNIT_OBJ) $(TEST_COMMON_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/helpers/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# The object is not under $(BUILD)/tests/gpu/: that path is the program. It sees the CUDA headers
# (events, PPD_CUDA_CHECK); the library's C files do not.
GPU_TEST_OBJ := $(BUILD)/tests/test_gpu.o $(BUILD)/tests/test_score_gpu.o \
                $(BUILD)/tests/test_esm_bf16_gpu.o $(BUILD)/tests/test_esm_gelu_gpu.o \
                $(BUILD)/tests/test_esm_residual_ln_gpu.o $(BUILD)/tests/gpu_steps.o \
                $(TEST_COMMON_OBJ)
$(filter-out $(TEST_COMMON_OBJ),$(GPU_TEST_OBJ)): $(BUILD)/tests/%.o: tests/gpu/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I$(CUDA_HOME)/include $(CFLAGS) -c $< -o $@

$(GPU_BIN): $(GPU_TEST_OBJ) $(CULIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(GPU_TEST_OBJ) $(CULIB) $(LIB) $(LDLIBS) $(CUDA_LDLIBS) -lstdc++ -o $@

# The GPU benchmark programs (scripts/gpu-check.sh)
GPU_PROG_OBJ := $(GPU_PROGS:%=$(BUILD)/tests/%.o)
$(GPU_PROG_OBJ): $(BUILD)/tests/%.o: tests/gpu/$$(subst -,_,%).c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(GPU_PROGS:%=$(BUILD)/tests/%): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(CULIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(CULIB) $(LIB) $(LDLIBS) $(CUDA_LDLIBS) -lstdc++ -o $@

$(GPU_PROGS:%=$(BUILD)/emu/tests/%): $(BUILD)/emu/tests/%: $(BUILD)/tests/%.o $(EMU_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $(EMU_LDFLAGS) $< $(EMU_OBJ) $(LIB) $(LDLIBS) -o $@
-include $(CU_OBJ:.o=.d) $(GPU_TEST_OBJ:.o=.d) $(GPU_PROG_OBJ:.o=.d)

# The GPU test program again, on the CPU emulation (tests/emu/cuda_emu.h force-included).
$(BUILD)/emu/%.o: %.cu tests/emu/cuda_emu.h
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -include tests/emu/cuda_emu.h -x c++ -c $< -o $@

$(BUILD)/emu/cuda_emu.o: tests/emu/cuda_emu.cpp tests/emu/cuda_emu.h
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

$(BUILD)/tests/gpu-emu: $(GPU_TEST_OBJ) $(EMU_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(LDFLAGS) $(EMU_LDFLAGS) $(GPU_TEST_OBJ) $(EMU_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/emu-selftest: tests/emu/test_emu.cpp $(BUILD)/emu/cuda_emu.o $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(EMU_LDFLAGS) -include tests/emu/cuda_emu.h $< $(BUILD)/emu/cuda_emu.o $(LIB) $(LDLIBS) -o $@
-include $(EMU_OBJ:.o=.d) $(BUILD)/tests/emu-selftest.d $(CUDA_TOOLS:%=$(BUILD)/emu/tools/%.d)

# ---- checks ---------------------------------------------------------------------------------
test: tests
	@PPD_BIN=$(BIN) PPD_TESTBIN=$(BUILD)/tests PPD_BUILD=$(BUILD) PPD_EMU_BIN=$(if $(EMU),$(BUILD)/emu/bin) tests/run.sh

test-long: tests
	@PPD_BIN=$(BIN) PPD_TESTBIN=$(BUILD)/tests PPD_BUILD=$(BUILD) PPD_EMU_BIN=$(if $(EMU),$(BUILD)/emu/bin) PPD_LONG=1 tests/run.sh

test-gpu: $(GPU_BIN)
	$(GPU_BIN)

test-emu: $(EMU_BIN)
	$(BUILD)/tests/emu-selftest
	$(BUILD)/tests/gpu-emu

demo: tools
	@PPD_BIN=$(BIN) ESM_WEIGHTS=$(ESM_WEIGHTS) scripts/demo.sh

bench: tools tests
	@PPD_BIN=$(BIN) bench/graph-build.sh
	@PPD_BIN=$(BIN) bench/esm-embed.sh
	@PPD_TESTBIN=$(BUILD)/tests bench/esm-sink.sh
	@PPD_BIN=$(BIN) PPD_TESTBIN=$(BUILD)/tests bench/train.sh
	@PPD_BIN=$(BIN) PPD_TESTBIN=$(BUILD)/tests bench/train-scale.sh

FUZZ_SECONDS ?= 180
FUZZ_CC ?= clang
fuzz:
	@mkdir -p $(BUILD)/fuzz tests/fuzz/findings
	$(FUZZ_CC) -std=c11 -g -O1 -Iinclude -D_GNU_SOURCE -DPPD_VERSION='"$(VERSION)"' \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  tests/fuzz/fuzz_pdb.c lib/core/*.c lib/io/pdb.c -lz -lxxhash -lm -pthread -o $(BUILD)/fuzz/fuzz_pdb
	rm -rf $(BUILD)/fuzz/corpus-work && cp -r tests/fuzz/corpus $(BUILD)/fuzz/corpus-work
	$(BUILD)/fuzz/fuzz_pdb -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	  -artifact_prefix=tests/fuzz/findings/ $(BUILD)/fuzz/corpus-work tests/fuzz/corpus

FORMAT_FILES = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h' '*.cu' '*.cuh' '*.cpp' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)
lint:
	bash -n slurm/*.sbatch slurm/*.sh scripts/*.sh bench/*.sh tests/*.sh tests/tools/*.sh .ci/run
	shellcheck -x slurm/*.sbatch slurm/*.sh scripts/*.sh bench/*.sh tests/*.sh tests/tools/*.sh .ci/run

deps:
	scripts/install-deps.sh

clean:
	rm -rf build bin demo-out bench-out

-include $(LIB_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(TEST_COMMON_OBJ:.o=.d) $(BUILD)/tools/*.d $(BUILD)/tests/helpers/*.d
