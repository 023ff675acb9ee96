# warmcache: the two commands a runner admin needs are `make demo` and `make test`.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
# A fresh Debian machine has Go in /usr/local/go/bin, not always on PATH.
export PATH := $(PATH):/usr/local/go/bin
BIN     := bin/warmcache
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build check-repo test unit e2e pkgtest deb bench soak demo deps images fmt vet clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/warmcache

# The Debian package, bin/warmcache_<version>_<arch>.deb (DEB_DIR). nfpm is
# built from the module proxy (packaging/nfpm, its own module); the version
# is git describe's, as for build; file times are the commit's.
DEB_DIR ?= bin
deb: build
	rm -rf bin/pkg
	$(GO) run ./packaging/stage -version '$(VERSION)' -bin $(BIN) -out bin/pkg \
		-urfave "$$($(GO) list -m -f '{{.Dir}}' github.com/urfave/cli/v2)"
	$(GO) -C packaging/nfpm build -o $(CURDIR)/bin/nfpm .
	mkdir -p $(DEB_DIR)
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
		bin/nfpm -config packaging/nfpm.yaml -version "$$(cat bin/pkg/debversion)" \
		-arch "$$($(GO) env GOARCH)" -target $(DEB_DIR)

# Installs and starts what the tests need (Docker engine, job images).
deps:
	scripts/setup-host.sh

images: deps
	test/images/build.sh

# No tracked file over 1 MB (binaries and build outputs are ignored).
check-repo:
	scripts/check-repo.sh

unit: check-repo
	$(GO) vet ./...
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/)

e2e: build images
	$(GO) test -count=1 -timeout 30m ./test/e2e/...

# Builds the package and installs, checks and removes it in a throwaway
# overlay of this host's root (needs root): the host itself is never changed.
pkgtest:
	$(GO) test -count=1 -timeout 10m ./test/pkg/

test: unit pkgtest e2e

# Figures are measured side by side in one run and printed as ratios.
bench: build images
	$(GO) test -count=1 -timeout 30m -run '^$$' -bench BareJob -benchtime 10x ./test/e2e/
	$(GO) test -count=1 -timeout 30m -run '^$$' -bench GoProject -benchtime 1x ./test/e2e/
	$(GO) test -count=1 -timeout 30m -run '^$$' -bench GitFetch -benchtime 3x ./test/e2e/
	$(GO) test -count=1 -timeout 30m -run '^$$' -bench FleetCache -benchtime 1x ./test/e2e/
	# Forks of a plain and of a quota'd cache at 25 MB and 250 MB (printed by the tests).
	$(GO) test -count=1 -timeout 30m -run 'TestForkVsCopy|TestQuotaFork' -v ./test/e2e/ | grep -E 'medians|quota.d volume made|^(ok|FAIL|---)'


# 8 concurrent jobs of two projects, SOAK_ROUNDS rounds (default 25).
soak: build images
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench Soak -benchtime 1x -v ./test/e2e/

demo: build images
	$(GO) run ./test/demo -driver $(BIN)

fmt:
	gofmt -l -w $$(git ls-files '*.go')

clean:
	rm -rf bin
