# villes - build, test, fuzz and bench.
#
#   make               libcore.a and the programs in bin/
#   make test          unit tests + CLI tests; ends with "N passed, N failed"
#   make check-asan    the same tests built with AddressSanitizer + UBSan
#   make fuzz          libFuzzer targets (checkpoint reader, UTF-8 reader), bounded time
#   make bench         speed and quality figures beside the PyTorch reference
#   make demo          fit n-gram models on data/villes.txt and generate names
#
# Layout: src/core (libcore) <- src/models (models, also in libcore) <- src/cmd
# (one main per program).  Every .c under src/core and src/models goes into
# build/libcore.a; every src/cmd/X.c becomes bin/X; every tests/unit/test_X.c
# becomes a test binary.

PKGS     := openblas libcjson libutf8proc
BUILD    ?= build
BIN      ?= bin
OPT      ?= -O3 -march=native
SAN      ?=
CC       ?= cc
# -fno-math-errno: nothing reads errno after a math call, and it lets GCC
# vectorise sqrtf (AdamW's update) instead of calling it per element.
CFLAGS   := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) $(SAN) -g -fno-math-errno \
            -Wall -Wextra -Wshadow -Wno-unused-parameter -Iinclude \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDFLAGS  := $(SAN) $(EXTRA_LDFLAGS)

LIB_SRC  := $(sort $(wildcard src/core/*.c src/models/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libcore.a
CMD_SRC  := $(sort $(wildcard src/cmd/*.c))
PROGS    := $(CMD_SRC:src/cmd/%.c=$(BIN)/%)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TESTS    := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all test check-asan fuzz bench demo weights clean deps
# Keep intermediate objects (test main.o), so parallel builds never race on them.
.SECONDARY:
all: $(LIB) $(PROGS)

deps:
	@tools/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/%: $(BUILD)/src/cmd/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/main.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

test: $(LIB) $(PROGS) $(TESTS)
	@BUILD=$(BUILD) BIN=$(BIN) tests/run.sh $(TESTS)

# Sanitizer build: its own build tree, so the normal build is untouched.
check-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" test

# Fuzzing with clang's libFuzzer, FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 30
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
fuzz:
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz BIN=build-fuzz/bin OPT=-O1 \
	    SAN="-fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libcore.a
	@set -e; for src in $(FUZZ_SRC); do \
	    name=$$(basename $$src .c); \
	    clang $(CFLAGS) $(FUZZ_FLAGS) $$src build-fuzz/libcore.a $(LDLIBS) -o build-fuzz/$$name; \
	    mkdir -p build-fuzz/corpus-$$name; \
	    echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
	    build-fuzz/$$name -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	        build-fuzz/corpus-$$name tests/fuzz/seeds-$$name 2>build-fuzz/$$name.log \
	        || { tail -40 build-fuzz/$$name.log; exit 1; }; \
	    tail -1 build-fuzz/$$name.log; \
	done

bench: all
	@tools/bench.sh

weights: all
	@tools/weights.sh

demo: all
	@tools/demo.sh

clean:
	rm -rf build build-asan build-fuzz bin

-include $(LIB_OBJ:.o=.d) $(CMD_SRC:%.c=$(BUILD)/%.d) $(TEST_SRC:%.c=$(BUILD)/%.d) $(BUILD)/tests/unit/main.d
