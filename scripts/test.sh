#!/usr/bin/env bash
# Runs keepup's whole test suite: vet, then every test (unit, end to end with the built binary,
# provider wire tests, fuzz seed corpora). Installs what the tests need when run as root on
# Debian; otherwise prints the command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need go; then
  echo "keepup tests need Go 1.26 or newer: see https://go.dev/doc/install" >&2
  exit 2
fi

# command -> Debian package the tests need: git, bubblewrap (the sandbox every command runs in).
missing=()
for pair in git:git bwrap:bubblewrap; do
  need "${pair%%:*}" || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && need apt-get; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "missing: ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
fi

export CGO_ENABLED=0
go vet ./...
go test -count=1 -timeout 15m ./...
