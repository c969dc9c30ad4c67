# cairn build and test entry points. `make test` is the README's test command
# and what .ci/run runs.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 20s

.PHONY: all build tools test test-race lint bench bench-micro fuzz clean robustness

all: build

build:
	$(GO) build -o bin/ ./cmd/...

# Tools the compatibility tests drive: etcd's own etcdctl.
tools:
	./tools/build-etcdctl.sh

# The default test run: every package, bounded so the whole run stays well
# under 20 minutes on 2 cores. The etcdctl tests are required here.
test: tools
	$(GO) vet $(PKGS)
	CAIRNTEST_ETCDCTL=$(CURDIR)/bin/tools/etcdctl $(GO) test -count=1 -timeout 15m $(PKGS)
	# The API's and the end-to-end suites again with grpc-go's server
	# (--grpc-server=grpc-go) instead of the default, internal/h2rpc.
	CAIRNTEST_GRPC_SERVER=grpc-go CAIRNTEST_ETCDCTL=$(CURDIR)/bin/tools/etcdctl $(GO) test -count=1 -timeout 15m ./api/... ./tests/e2e/

test-race:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-ed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

# Load table (issue 6): 1- and 3-member clusters of the built binary and of
# etcd v3.7.1 (tools/build-etcd.sh) side by side on loopback, every scenario
# with bin/cairn-bench against both (throughput, latency, and the CPU time
# the members and the load client spent per request), the put rows again
# with etcd's own benchmark tool (tools/build-etcd-benchmark.sh), RSS and
# restart time with 1M keys; rewrites the "## Load: cairn vs etcd" section of
# BENCHMARKS.md.
# Takes several minutes; not part of `make test`.
bench:
	$(GO) build -o bin/ ./cmd/cairn ./cmd/cairn-bench
	./tools/build-etcd.sh
	./tools/build-etcd-benchmark.sh
	$(GO) run ./tools/loadbench --bin bin --etcd bin/tools/etcd --etcd-benchmark bin/tools/etcd-benchmark --rounds 3 --out BENCHMARKS.md

# Micro-benchmarks of the storage hot paths. Figures go to BENCHMARKS.md.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 30m ./wal/ ./mvcc/

# Randomized fault-injection runs (tests/robustness): RUNS scenarios of
# DURATION traffic each, every fault kind; SEED replays a run's schedule.
# Results go to ROBUSTNESS.md. The short mode (TestRobustness) runs in `test`.
RUNS     ?= 10
DURATION ?= 20s
SEED     ?= 0
EXCLUDE  ?=
robustness:
	$(GO) test -count=1 -timeout 0 -v -run '^TestRobustnessRandom$$' ./tests/robustness/ \
	  -args -robustness.runs=$(RUNS) -robustness.duration=$(DURATION) -robustness.seed=$(SEED) \
	  -robustness.exclude=$(EXCLUDE)

# Each fuzz target for FUZZTIME.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin/
