// Package benchtest holds what benchmarks in several packages share.
package benchtest

import (
	"slices"
	"testing"
	"time"
)

// Latency times each iteration of fn and reports the median and the 95th percentile, in
// milliseconds, as the metrics p50-ms and p95-ms (which scripts/bench.sh reads).
func Latency(b *testing.B, fn func()) {
	b.Helper()
	var ds []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		fn()
		ds = append(ds, time.Since(start))
	}
	b.StopTimer()
	Report(b, ds)
}

// Report reports the median and the 95th percentile of ds, in milliseconds, as Latency does:
// for benchmarks that time only part of each iteration.
func Report(b *testing.B, ds []time.Duration) {
	b.Helper()
	slices.Sort(ds)
	p := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.50), "p50-ms")
	b.ReportMetric(p(0.95), "p95-ms")
}
