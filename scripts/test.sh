#!/usr/bin/env bash
# Runs keepup's whole test suite: vet, then every test (unit, end to end with the built binary
# and real bubblewrap sandboxes, provider wire tests, fuzz seed corpora).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
go vet ./...
go test -count=1 -timeout 20m ./...
