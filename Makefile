# sky-coord — build, test and benchmark.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
# Fuzzing time for spec.FuzzParse in `make test`.
# A count of executions, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report its own deadline as a failure (golang/go#75804),
# which turned CI red once with no failing input. 150000 runs take about
# 30 s on 2 loaded cores.
FUZZTIME ?= 150000x

.PHONY: all build test test-deps lint unit fuzz bench clean

all: build

# Static binaries: one upload of sky-agent runs on any Linux node of the
# same architecture. The coordinator (sky-coord-server) is a binary of its
# own, which `sky-coord server` execs, so that the CLI stays small and
# starts fast.
# The agent is also cross-built for both Linux architectures, so a node of
# either kind gets its own (bootstrap picks by `uname -m`). sky-mount (the
# bucket mounter, which links the object-store SDKs) is fetched by agents
# only when a job mounts a bucket; it is built for this machine.
build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/sky-coord ./cmd/sky-coord
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/sky-coord-server ./cmd/sky-coord-server
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/sky-agent ./cmd/sky-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build $(GOFLAGS_BUILD) -o bin/sky-agent-linux-amd64 ./cmd/sky-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build $(GOFLAGS_BUILD) -o bin/sky-agent-linux-arm64 ./cmd/sky-agent
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/sky-mount ./cmd/sky-mount

# System packages the tests use, installed only when missing and only as
# root (CI); elsewhere the tests that need them skip and say why.
test-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  for p in bash:bash procps:ps rsync:rsync git:git openssh-server:/usr/sbin/sshd iproute2:ip fuse3:fusermount3 passwd:useradd util-linux:setsid gzip:gzip rclone:rclone; do \
	    command -v $${p#*:} >/dev/null || missing="$$missing $${p%%:*}"; \
	  done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi; \
	fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

fuzz:
	@if grep -q 'func FuzzParse' spec/*_test.go 2>/dev/null; then \
	  $(GO) test ./spec -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 0s; \
	fi

test: test-deps build lint unit fuzz

bench: build test-deps
	$(GO) run ./bench -out BENCHMARKS.md

clean:
	rm -rf bin
