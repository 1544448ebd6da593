# kaar: two commands matter on a fresh machine.
#   make run    run kaar (with no kubeconfig it starts the local sandbox cluster with demo failures)
#   make test   run every test (lint, unit, NATS, sandbox end-to-end), with -race
# Everything else is installed by these targets: Go modules, the control plane
# binaries (built once, cached), the linters, the npm tools.

SHELL := /bin/bash
GO ?= go
ROOT := $(CURDIR)
BIN := $(ROOT)/bin
# Lint tools, pinned, installed into bin/ once by the lint target (the file
# names carry the version, so bumping a version installs the new one).
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
GOVULNCHECK_VERSION := v1.9.0
GOVULNCHECK := $(BIN)/govulncheck-$(GOVULNCHECK_VERSION)
# govulncheck's database. vuln.go.dev cannot be reached from these machines
# (only the Go module proxy can), so the database is built locally from the
# OSV files of golang.org/x/vulndb, which the module proxy serves, with that
# module's own cmd/indexdb. It is exactly as fresh as VULNDB_VERSION (the date
# is in the pseudo-version): bump it to take newer advisories (the newest is
# `go list -m golang.org/x/vulndb@latest`). On a machine that reaches
# vuln.go.dev, `make lint GOVULNDB=https://vuln.go.dev` checks the live one.
# hack/vulncheck.sh fails on a reachable vulnerability in a module of go.mod
# and prints, without failing, those in this machine's Go standard library
# (fixed by a newer Go, not by this repository; VULNCHECK_STRICT=1 fails on
# them too).
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB := $(BIN)/vulndb-$(VULNDB_VERSION)
GOVULNDB ?= file://$(VULNDB)
SERVICES := watcher planner executor mcpgateway notifier

.PHONY: help run build test unit lint fmt sandbox sandbox-down sandbox-status compose-up compose-down compose-plugin bench bench-pipeline bench-watcher bench-ha chaos mcp-tools interop tidy clean

help: ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

run: build ## run kaar serve (uses $$KUBECONFIG / ~/.kube/config, else starts the sandbox with demo failures)
	$(BIN)/kaar serve $(ARGS)

build: ## build bin/kaar and the per-service binaries (kaar-watcher, -planner, -executor, -mcpgateway, -notifier)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/kaar $(foreach s,$(SERVICES),./services/$(s)/cmd/kaar-$(s))

test: $(GOLANGCI_LINT) $(GOVULNCHECK) $(VULNDB) ## every test (go test -race ./...) against real NATS and the real sandbox, with make lint beside them
	./hack/test.sh

unit: ## the fast loop: go test -short ./... (no control plane; sandbox tests skip under -short)
	$(GO) test -short -count=1 -p 4 ./...

lint: $(GOLANGCI_LINT) $(GOVULNCHECK) $(VULNDB) ## gofmt, go vet, golangci-lint (.golangci.yml), go mod tidy -diff, govulncheck (hack/vulncheck.sh)
	@out=$$(gofmt -l cmd pkg services deploy test hack); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...
	$(GO) mod tidy -diff
	GO=$(GO) ./hack/vulncheck.sh $(GOVULNCHECK) $(GOVULNDB)
	@echo "lint: ok (gofmt, go vet, golangci-lint $(GOLANGCI_LINT_VERSION), go mod tidy -diff, govulncheck $(GOVULNCHECK_VERSION) with $(GOVULNDB))"

$(GOLANGCI_LINT):
	@mkdir -p $(BIN)
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) into bin/ (once)"
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/golangci-lint $(GOLANGCI_LINT)

$(GOVULNCHECK):
	@mkdir -p $(BIN)
	@echo "installing govulncheck $(GOVULNCHECK_VERSION) into bin/ (once)"
	GOBIN=$(BIN) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	mv $(BIN)/govulncheck $(GOVULNCHECK)

# The vulnerability database (see VULNDB_VERSION): the module proxy serves
# golang.org/x/vulndb's data/osv/*.json; its cmd/indexdb writes the index
# files govulncheck reads. Built into a temporary directory and renamed, so an
# interrupted build is redone.
$(VULNDB):
	@mkdir -p $(BIN)
	@echo "building the Go vulnerability database golang.org/x/vulndb@$(VULNDB_VERSION) into bin/ (once)"
	GOBIN=$(BIN) $(GO) install golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION)
	$(GO) mod download golang.org/x/vulndb@$(VULNDB_VERSION)
	rm -rf $(VULNDB).tmp
	$(BIN)/indexdb -vulns "$$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB_VERSION)/data/osv" -out $(VULNDB).tmp
	mv $(VULNDB).tmp $(VULNDB)
	rm -f $(BIN)/indexdb

fmt: ## gofmt the tree
	gofmt -w cmd pkg services deploy test hack

sandbox: ## start the local sandbox cluster with the demo failures (idempotent); prints KUBECONFIG
	cd pkg/sandbox && $(GO) run ./cmd/kaar-sandbox up --demo

sandbox-down: ## stop the sandbox
	cd pkg/sandbox && $(GO) run ./cmd/kaar-sandbox down

sandbox-status: ## show what the sandbox runs
	cd pkg/sandbox && $(GO) run ./cmd/kaar-sandbox status

compose-up: ## the compose demo in Docker: builds the images (FROM scratch, no registry), starts NATS, the demo cluster and the five services, prints the MCP endpoint and token
	./hack/compose.sh up

compose-down: ## remove the compose demo (containers, volumes, network) and stop the Docker daemon compose-up started
	./hack/compose.sh down

compose-plugin: ## install Docker Compose (pinned, built from its Go module) into bin/ as the docker CLI plugin, once
	./deploy/hack/install-compose.sh

bench: ## benchmarks of every module (go test -bench), then the pipeline benchmark on the sandbox
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v '/cmd/kaar$$')
	@$(MAKE) --no-print-directory bench-pipeline

bench-pipeline: ## failure-to-plan latency of kaar serve on the sandbox (30 failing Deployments)
	@echo "== cmd/kaar: BenchmarkFailureToPlan (starts a sandbox unless KAAR_SANDBOX_KUBECONFIG is set)"
	cd cmd/kaar && $(GO) test -run '^$$' -bench FailureToPlan -benchtime 30x -timeout 30m .

bench-watcher: ## the kaar-watcher program (built as the images build it) at scale on a private sandbox: 10,000 pods over 100 kwok nodes, a 2,000-pod storm; appends to BENCHMARKS.md
	$(GO) run ./services/watcher/cmd/kaar-watcher-bench -pods 10000 -nodes 100 -storm 2000 -analyze 1000 -out $(ROOT)/BENCHMARKS.md

bench-ha: ## the split deployment (3-node R3 cluster) next to one process: incidents detected and planned per second, decisions executed per second (sandbox)
	cd cmd/kaar && $(GO) test -run '^$$' -bench 'ExecutedDecisions|IncidentsToExecutions' -benchtime 1x -timeout 60m .

chaos: ## long chaos suite: executor and NATS SIGKILLs on one NATS server and on a 3-node R3 cluster, planner/watcher/notifier SIGKILLs in the split deployment, 50 plans per scenario, a leaf cluster cut off and its central NATS killed; prints the tables (into .cache/chaos-table.txt, .cache/chaos-cluster-table.txt, .cache/chaos-pipeline-table.txt, .cache/chaos-leaf-table.txt)
	set -o pipefail; cd cmd/kaar && KAAR_CHAOS_RUNS=$${KAAR_CHAOS_RUNS:-5} KAAR_CHAOS_BATCH=$${KAAR_CHAOS_BATCH:-10} KAAR_CHAOS_TABLE=$(ROOT)/.cache/chaos-table.txt \
		KAAR_CHAOS_CLUSTER_TABLE=$(ROOT)/.cache/chaos-cluster-table.txt KAAR_CHAOS_PIPELINE_TABLE=$(ROOT)/.cache/chaos-pipeline-table.txt \
		KAAR_CHAOS_LEAF=1 KAAR_CHAOS_LEAF_TABLE=$(ROOT)/.cache/chaos-leaf-table.txt \
		$(GO) test -count=1 -run 'TestChaosExecutorAndNATSKills|TestChaosOnAThreeNodeCluster|TestChaosPipelineOnAThreeNodeCluster|TestLeafChaos' -timeout 120m -v . | grep -E -A14 '^\s+(pipeline )?scenario|^(ok|FAIL|---)'

mcp-tools: ## install Node.js 22, the MCP conformance suite and the MCP Inspector (pinned) into .cache/mcp-tools, once
	./hack/mcp-tools.sh

interop: mcp-tools ## MCP interop against kaar serve on the sandbox: conformance suite, Inspector over HTTP and stdio, client snippets
	cd test/mcpinterop && $(GO) test -race -count=1 -timeout 20m -v ./...

tidy: ## go mod tidy
	$(GO) mod tidy

clean: ## remove build outputs (keeps the cached control plane binaries)
	rm -rf $(BIN)
