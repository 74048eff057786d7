# zerotrace build, test and benchmark entry points.
#
#   make demo     build zerotrace and the sample service, start the service,
#                 attach to it and show its spans (needs root; only Go needed)
#   make check    everything CI runs: setup, generated-code check, vet,
#                 unit + privileged + end-to-end tests, kernel matrix (root)

GO        ?= go
CLANG     ?= clang-19
BIN       := bin
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# The privileged tests fail instead of skipping when they lack root.
TESTENV   := ZEROTRACE_REQUIRE_ROOT=1
# The test timeout covers building Jaeger and the sample apps once.
# -p 1: privileged tests of different packages load programs with the same
# names and share fixed ports; running packages one at a time keeps them apart.
TESTFLAGS ?= -count=1 -p 1 -timeout 40m

.PHONY: all build demo generate check-generate vmlinux setup vet test test-unit test-e2e bench vmtest check clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/zerotrace ./cmd/zerotrace
	$(GO) build -o $(BIN)/sampleapp ./tests/sampleapp

demo: build
	./scripts/demo.sh

# Regenerate the BPF objects and their Go wrappers with the pinned compiler.
generate:
	BPF2GO_CC=$(CLANG) $(GO) generate ./probes/...

# Fails when the committed generated files differ from a fresh generation.
check-generate: generate
	@if [ -n "$$(git status --porcelain -- probes bpf)" ]; then \
		echo "generated BPF files are out of date (run make generate and commit):"; \
		git status --porcelain -- probes bpf; git --no-pager diff --stat -- probes bpf; exit 1; \
	fi
	@echo "generated BPF files are up to date"

vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h

setup:
	./scripts/setup.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Unit tests that need no privilege.
test-unit:
	$(GO) test $(TESTFLAGS) ./correlate/... ./export/... ./probes/gobin/... ./probes/offsets/... ./probes/events/... \
		./probes/registry/... ./probes/session/... ./probes/nethttp/... ./probes/dbsql/... ./probes/syscalls/... ./probes/openssl/... \
		./tests/modelserver/... ./tests/internal/modelspec/...

# Everything, including the tests that load BPF and trace real processes.
test:
	$(TESTENV) $(GO) test $(TESTFLAGS) ./...

test-e2e:
	$(TESTENV) $(GO) test $(TESTFLAGS) -v ./tests/e2e/...

bench: build
	$(GO) run ./tests/bench

vmtest:
	./scripts/vmtest.sh

check: setup check-generate vet test vmtest

clean:
	rm -rf $(BIN) .cache
