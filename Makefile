# Thin wrapper over CMake. `make run` and `make test` set up a fresh Debian machine first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
JOBS       ?= $(shell nproc)
LISTEN     ?= 127.0.0.1:8080
DATA       ?= ./data

.PHONY: all build deps run test test-asan test-tsan fuzz bench clean format

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

# The same as `make`: without it, `make build` names the build directory and does nothing.
build: all

deps:
	bash scripts/deps.sh

run: deps all
	$(BUILD)/twinlane serve --data $(DATA) --listen $(LISTEN)

# The libFuzzer targets (tests/fuzz/) need clang: a build of their own.
define fuzz_build
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTL_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
endef

# ctest, then every fuzz target for a few seconds so none of them rots.
test: deps all
	cd $(BUILD) && ctest --output-on-failure
	$(fuzz_build)
	FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) bash scripts/fuzz.sh $(FUZZ_BUILD)

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTL_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure

test-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTL_TSAN=ON
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && ctest --output-on-failure -E bench_smoke

# Every fuzz target for FUZZ_SECONDS (default 60) from its seed corpus; see scripts/fuzz.sh.
fuzz: deps
	$(fuzz_build)
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh $(FUZZ_BUILD)

# Every benchmark figure in one run (bench/README.md): the table, and bench/results/latest.json.
# BENCH_PG=0 skips the PostgreSQL baseline.
BENCH_PG ?= 1
bench: deps all
	bash scripts/deps.sh --bench
	BENCH_PG=$(BENCH_PG) bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)

format:
	clang-format -i src/*.c src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c tests/fuzz/*.h \
	  bench/*.c
