#!/usr/bin/env bash
# Runs `keepup demo`: a scripted task on sample receipts, through the real runtime and sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
exec go run ./cmd/keepup demo "$@"
