#!/usr/bin/env bash
# Runs keepup's benchmarks and writes docs/benchmarks.md with the machine and the date.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

go test -run '^$' -bench 'BenchmarkTurnOverhead' -benchtime 2000x -count 5 ./internal/agent/ | tee -a "$out"
go test -run '^$' -bench 'BenchmarkVerify' -benchtime 3x -count 3 ./internal/store/sqlite/ | tee -a "$out"
go test -run '^$' -bench 'BenchmarkVerify' -count 3 ./internal/audit/ | tee -a "$out"
go test -run '^$' -bench 'BenchmarkCommitTypicalBatch' -count 3 ./internal/store/sqlite/ | tee -a "$out"
go test -run '^$' -bench 'BenchmarkSandboxLatency' -benchtime 200x -count 1 ./e2e/ | tee -a "$out"
go test -run '^$' -bench 'BenchmarkProxy' -benchtime 1x -count 3 ./internal/egress/ | tee -a "$out"

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
turn_ns=$(awk '/^BenchmarkTurnOverhead/ {print $3}' "$out" | median)
verify_sql=$(awk '/^BenchmarkVerify/ && /entries\/s/ {for (i=1;i<=NF;i++) if ($(i+1)=="entries/s") print $i}' "$out" | head -3 | median)
verify_mem=$(awk '/^BenchmarkVerify/ && /entries\/s/ {for (i=1;i<=NF;i++) if ($(i+1)=="entries/s") print $i}' "$out" | tail -3 | median)
commit_ns=$(awk '/^BenchmarkCommitTypicalBatch/ {print $3}' "$out" | median)

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
turn_ms=$(awk -v n="$turn_ns" 'BEGIN {printf "%.3f", n/1e6}')
turn_ratio=$(awk -v n="$turn_ns" 'BEGIN {printf "%.2f", 2e6/n}')
v_ratio=$(awk -v n="$verify_sql" 'BEGIN {printf "%.2f", n/500000}')

cat > docs/benchmarks.md <<MD
# Benchmarks

Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($cpu), $mem, $(go version | awk '{print $3}'), by \`scripts/bench.sh\`.
Medians of repeated runs; ratios are target / measured for times and measured / target for rates
(above 1 beats the target).

| what | measured | target | ratio |
|---|---|---|---|
| runtime overhead per turn (script model, zero latency; read_file + update_plan; journal and audit on SQLite) | ${turn_ms} ms | ≤ 2 ms | ${turn_ratio}× |
| \`audit verify\` throughput, SQLite file | $(printf "%.0f" "$verify_sql") entries/s | ≥ 500,000 entries/s | ${v_ratio}× |
| audit chain check alone, in memory | $(printf "%.0f" "$verify_mem") entries/s | — | — |
| one store commit (task + 3 events + 1 call + 1 audit entry) | $(awk -v n="$commit_ns" 'BEGIN {printf "%.1f", n/1000}') µs | — | — |

## Sandbox latency

Running \`true\`, side by side in one run (200 runs each; milliseconds):

| path | p50 | p95 |
|---|---|---|
$(awk '/^BenchmarkSandboxLatency\// {name=$1; sub(/^BenchmarkSandboxLatency\//, "", name); sub(/-[0-9]+$/, "", name); for (i=1;i<=NF;i++) {if ($(i+1)=="p50-ms") p50=$i; if ($(i+1)=="p95-ms") p95=$i}; printf "| %s | %s | %s |\n", name, p50, p95}' "$out")

Targets: warm-session command overhead ≤ 3 ms over bare fork/exec (warm-bash-tool p50 minus
bare-fork-exec p50: $(awk '/^BenchmarkSandboxLatency\/warm-bash-tool/ {for (i=1;i<=NF;i++) if ($(i+1)=="p50-ms") w=$i} /^BenchmarkSandboxLatency\/bare-fork-exec/ {for (i=1;i<=NF;i++) if ($(i+1)=="p50-ms") f=$i} END {printf "%.2f ms", w-f}' "$out")); cold start ≤ 1.5× bare bwrap
(cold-sandbox-exec p50 / bare-bwrap p50: $(awk '/^BenchmarkSandboxLatency\/cold-sandbox-exec/ {for (i=1;i<=NF;i++) if ($(i+1)=="p50-ms") c=$i} /^BenchmarkSandboxLatency\/bare-bwrap/ {for (i=1;i<=NF;i++) if ($(i+1)=="p50-ms") w=$i} END {printf "%.1f×", c/w}' "$out")).
The cold path includes the whole \`keepup\` CLI (configuration, grants, the helper handshake,
teardown); the warm path includes the bash tool's parsing and classification.

## Egress proxy

Small HTTPS requests on loopback through the session proxy against direct (each row the median
of three runs of 200 requests; microseconds), and a 100 MB transfer through a CONNECT tunnel:

| path | direct | via proxy | added |
|---|---|---|---|
$(for m in warm/tunnel warm/terminate cold/tunnel cold/terminate; do
  awk -v m="BenchmarkProxyLatency/$m-" 'index($1, m) == 1 {for (i=1;i<=NF;i++) {if ($(i+1)=="added-median-µs") a=a" "$i; if ($(i+1)=="direct-median-µs") d=d" "$i; if ($(i+1)=="proxy-median-µs") p=p" "$i}} END {print a "|" d "|" p}' "$out" |
  { IFS='|' read -r a d p; printf "| %s | %s | %s | %s |\n" "$m" "$(echo $d | tr ' ' '\n' | median)" "$(echo $p | tr ' ' '\n' | median)" "$(echo $a | tr ' ' '\n' | median)"; }
done)

Throughput ratio (proxy / direct, 100 MB): $(awk '/^BenchmarkProxyThroughput/ {for (i=1;i<=NF;i++) if ($(i+1)=="ratio") print $i}' "$out" | median)
(target ≥ 0.80). Added median target: ≤ 1 ms. "terminate" is a host whose requests the proxy
checks (request-level rules or a pinned credential), so it terminates TLS; "cold" opens a new
connection per request, "warm" reuses one.

Raw output:

\`\`\`
$(grep -E '^(Benchmark|goos|goarch|cpu|pkg)' "$out")
\`\`\`
MD
echo "wrote docs/benchmarks.md"
