#!/usr/bin/env bash
# Runs keepup's whole test suite: vet, then every test (unit, end to end with the built binary
# and real bubblewrap sandboxes, provider wire tests, fuzz seed corpora).
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests also run curl, Python and Java (a JDK: java and javac) inside real sandboxes.
extra_deps="curl:curl python3:python3 javac:default-jdk-headless"
. scripts/deps.sh
go vet ./...
go test -count=1 -timeout 20m ./...
