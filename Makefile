# villes - build, test, fuzz and bench.
#
#   make               the three library archives and the programs in bin/
#   make test          unit tests + CLI tests + the layer check; ends with "N passed, N failed"
#   make check-asan    the same tests built with AddressSanitizer + UBSan
#   make check-layers  the include arrows run core <- models <- app <- programs only
#   make fuzz          libFuzzer targets (tests/fuzz/fuzz_*.c), FUZZ_SECONDS or FUZZ_RUNS each
#   make fuzz-long     the same, 10 million executions each
#   make bench         speed and quality figures beside the PyTorch reference
#   make MPI=1         the programs built with mpicc into build-mpi/bin (mpirun -np N
#                      TRAINER trains across N processes); make MPI=1 test runs the
#                      tests with them, the 2-process one included
#   make demo          fit n-gram models on data/villes.txt and generate names
#   make install       programs, weights, man pages, completion, headers, archives,
#                      villes.pc under $(DESTDIR)$(PREFIX); make uninstall removes them
#   make figures       the README's figures (figures/*.png) from one study run
#
# Four floors, each built as its own archive and compiled with only the
# public headers of itself and the floors below it, so that an include that
# runs back up does not compile:
#
#   floor       sources       archive               may include
#   engine      src/core/     build/libcore.a       include/core
#   models      src/models/   build/libmodels.a     include/core, include/models
#   app         src/app/      build/libapp.a        include/core, include/models, include/app
#   programs    src/cmd/      bin/X (one main each) all three
#
# Every src/cmd/X.c becomes bin/X; every tests/unit/test_X.c becomes a test
# binary (tests see every floor).  Headers private to a floor
# (ops_internal.h) sit beside its sources.

PKGS     := openblas libcjson libutf8proc
# libmicrohttpd is optional: without it, generate --serve says it is not built in.
HAVE_MHD := $(shell pkg-config --exists libmicrohttpd 2>/dev/null && echo yes)
ifeq ($(HAVE_MHD),yes)
PKGS     += libmicrohttpd
endif
# make MPI=1: the programs built with mpicc in their own tree (build-mpi/,
# programs in build-mpi/bin), the trainers then training across the
# processes of `mpirun -np N` (include/app/trmpi.h).  Without it nothing
# needs MPI.
MPI      ?=
ifeq ($(MPI),1)
BUILD    ?= build-mpi
BIN      ?= build-mpi/bin
CC       := mpicc
endif
BUILD    ?= build
BIN      ?= bin
OPT      ?= -O3 -march=native
SAN      ?=
CC       ?= cc
# -fno-math-errno: nothing reads errno after a math call, and it lets GCC
# vectorise sqrtf (AdamW's update) instead of calling it per element.
CFLAGS   := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) $(SAN) -g -fno-math-errno \
            -Wall -Wextra -Wshadow -Wno-unused-parameter \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
ifeq ($(HAVE_MHD),yes)
CFLAGS   += -DVILLES_HAVE_MHD
endif
ifeq ($(MPI),1)
CFLAGS   += -DVILLES_MPI
endif
LDFLAGS  := $(SAN) $(EXTRA_LDFLAGS)

INC_core   := -Iinclude/core
INC_models := $(INC_core) -Iinclude/models
INC_app    := $(INC_models) -Iinclude/app
INC_all    := $(INC_app)
floor_src = $(sort $(wildcard src/$(1)/*.c))
CORE_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(call floor_src,core))
MODELS_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(call floor_src,models))
APP_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(call floor_src,app))
LIB_OBJ  := $(CORE_OBJ) $(MODELS_OBJ) $(APP_OBJ)
# Link order: each archive before the ones it uses.
LIBS     := $(BUILD)/libapp.a $(BUILD)/libmodels.a $(BUILD)/libcore.a
CMD_SRC  := $(sort $(wildcard src/cmd/*.c))
PROGS    := $(CMD_SRC:src/cmd/%.c=$(BIN)/%)
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TESTS    := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all test check-asan check-layers fuzz fuzz-long bench demo weights figures clean deps man install uninstall
# Keep intermediate objects (test main.o), so parallel builds never race on them.
.SECONDARY:
all: $(LIBS) $(PROGS)

deps:
	@tools/install-deps.sh

# The include path of each floor (pattern-specific: the object's floor).
$(BUILD)/src/core/%.o:   INC := $(INC_core)
$(BUILD)/src/models/%.o: INC := $(INC_models)
$(BUILD)/src/app/%.o:    INC := $(INC_app)
$(BUILD)/src/cmd/%.o:    INC := $(INC_all)
$(BUILD)/tests/%.o:      INC := $(INC_all)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(INC) -MMD -MP -c $< -o $@

$(BUILD)/libcore.a: $(CORE_OBJ)
$(BUILD)/libmodels.a: $(MODELS_OBJ)
$(BUILD)/libapp.a: $(APP_OBJ)
$(LIBS):
	@rm -f $@
	ar rcs $@ $^

$(BIN)/%: $(BUILD)/src/cmd/%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $< $(LIBS) $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/main.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

test: $(LIBS) $(PROGS) $(TESTS)
	@BUILD=$(BUILD) BIN=$(BIN) tests/run.sh $(TESTS)

check-layers:
	@tools/check-layers.sh

# Sanitizer build: its own build tree, so the normal build is untouched.
check-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" test

# Fuzzing with clang's libFuzzer, FUZZ_SECONDS per target, or FUZZ_RUNS
# executions per target when set (make fuzz-long: 10 million each).  The
# last line of each target's log (executions, exec/s) is printed.
FUZZ_SECONDS ?= 30
FUZZ_RUNS ?=
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_LIMIT = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS))
fuzz:
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz BIN=build-fuzz/bin OPT=-O1 \
	    SAN="-fsanitize=fuzzer-no-link,address,undefined" $(LIBS:$(BUILD)/%=build-fuzz/%)
	@set -e; for src in $(FUZZ_SRC); do \
	    name=$$(basename $$src .c); \
	    clang $(CFLAGS) $(INC_all) $(FUZZ_FLAGS) $$src $(LIBS:$(BUILD)/%=build-fuzz/%) $(LDLIBS) \
	        -o build-fuzz/$$name; \
	    mkdir -p build-fuzz/corpus-$$name; \
	    case $$name in fuzz_mix) len=16384 ;; fuzz_bpe) len=256 ;; *) len=4096 ;; esac; \
	    echo "fuzz: $$name, $(FUZZ_LIMIT)"; \
	    build-fuzz/$$name $(FUZZ_LIMIT) -max_len=$$len -print_final_stats=1 \
	        build-fuzz/corpus-$$name tests/fuzz/seeds-$$name 2>build-fuzz/$$name.log \
	        || { tail -40 build-fuzz/$$name.log; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' build-fuzz/$$name.log \
	        | tr '\n' ' '; echo; \
	done
fuzz-long:
	@$(MAKE) --no-print-directory fuzz FUZZ_RUNS=10000000

# Installation (tools/install.sh): man pages made by help2man from each
# program's --help, bash completion from the same text (tools/completion.sh).
PREFIX   ?= /usr/local
DESTDIR  ?=
HELP2MAN ?= $(shell command -v help2man 2>/dev/null)
MANS     := $(PROGS:$(BIN)/%=$(BUILD)/man/%.1)
COMPLETIONS := $(PROGS:$(BIN)/%=$(BUILD)/completion/%)
INSTALL_ENV = PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' BIN='$(BIN)' BUILD='$(BUILD)'

$(BUILD)/man/%.1: $(BIN)/% README.md tools/manpage.sh
	tools/manpage.sh $< $@
$(BUILD)/completion/%: $(BIN)/% tools/completion.sh
	@mkdir -p $(@D)
	tools/completion.sh $< $@
man: $(MANS)
install: all $(COMPLETIONS) $(if $(HELP2MAN),$(MANS))
	@$(if $(HELP2MAN),,echo "install: help2man not found: no man pages in man1 (Debian: apt-get install help2man)";) \
	    $(INSTALL_ENV) MAN=$(if $(HELP2MAN),yes,no) tools/install.sh install
uninstall:
	@$(INSTALL_ENV) tools/install.sh uninstall

bench: all
	@tools/bench.sh

weights: all
	@tools/weights.sh

demo: all
	@tools/demo.sh

figures: all
	@tools/figures.sh

clean:
	rm -rf build build-asan build-fuzz build-mpi bin

-include $(LIB_OBJ:.o=.d) $(CMD_SRC:%.c=$(BUILD)/%.d) $(TEST_SRC:%.c=$(BUILD)/%.d) $(BUILD)/tests/unit/main.d
