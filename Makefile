# Tidepool's make targets. `make` alone lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
MODULE    := $(shell sed -n 's/^module //p' go.mod)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := $(CURDIR)/bin
# Where scripts/install-tools.sh caches agents and tools (outside the repo).
TOOLS_BIN := $(shell scripts/install-tools.sh --print-bin)
GOTESTSUM := $(TOOLS_BIN)/gotestsum
GOLANGCI  := $(TOOLS_BIN)/golangci-lint
# Test flags; e.g. `make test TESTFLAGS='-run TestGroupCountZero'`.
TESTFLAGS ?=
TEST_TIMEOUT ?= 45m

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: ## Build the pinned Consul, Nomad and nomad-autoscaler agents and install golangci-lint and gotestsum (cached)
	@scripts/install-tools.sh all >/dev/null

.PHONY: agents
agents:
	@scripts/install-tools.sh agents chromium gotestsum >/dev/null

.PHONY: build
build: ## Build tidepool, tidepool-echo and tidepool-dev into bin/
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

.PHONY: test
test: agents ## Run every test (unit, integration and e2e against real agents) with -race
	$(GOTESTSUM) --format testname -- -race -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) ./...

# Fuzz targets and their packages; `make fuzz FUZZTIME=2m` for a longer run.
FUZZTIME ?= 10s
FUZZ_TARGETS := FuzzServeHTTP:./gateway FuzzParseHost:./gateway/routing FuzzDecode:./gateway/jsonrpc FuzzDecodeSpec:./plugin/api FuzzParse:./plugin/poolspec

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (10s) each
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} ($${t#*:}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) "$${t#*:}" || exit 1; \
	done

.PHONY: lint
lint: ## Run golangci-lint
	@scripts/install-tools.sh golangci-lint >/dev/null
	$(GOLANGCI) run ./...

.PHONY: check
check: lint ## lint, go.mod tidiness and import boundaries
	@scripts/check.sh

.PHONY: dev
dev: agents build ## Run the whole stack locally (agents, controller, the example echo pool); Ctrl-C stops it
	@$(BIN)/tidepool-dev -bin-dir $(BIN) -pool jobspecs/examples/echo.pool.hcl

.PHONY: bench
bench: ## Run the Go benchmarks, then the gateway load comparison (scripts/bench-gateway.sh)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	scripts/bench-gateway.sh
