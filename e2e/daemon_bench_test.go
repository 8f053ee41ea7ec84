package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/queue"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
)

// peakRSS returns a process's peak resident set (VmHWM) in MiB.
func peakRSS(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// latencyScript: a plan, a write and a final text, each turn answered after ms (the first
// after 5 s, so that every task is running before the first ends).
func latencyScript(e *env, ms int) string {
	return e.script(
		map[string]any{"delay_ms": 5 * ms, "tool_calls": []any{obj{"name": "update_plan", "input": planCall("write")}}},
		map[string]any{"delay_ms": ms, "tool_calls": []any{obj{"name": "write_file", "input": obj{"path": "${task}.txt", "content": "x"}}}},
		map[string]any{"delay_ms": ms, "text": "Wrote it."},
	)
}

func countStatus(db *sqlite.DB, states ...task.State) int {
	ts, _ := db.Tasks(context.Background(), store.TaskFilter{Status: states})
	return len(ts)
}

// BenchmarkDaemon1000Tasks runs 1,000 tasks at once in the real daemon (script model at 1 s
// per turn) and reports the daemon's peak RSS (target ≤ 1.5 GB) and the wall time. Run with
// -benchtime 1x.
func BenchmarkDaemon1000Tasks(b *testing.B) {
	for range b.N {
		e := newEnv(b)
		d := e.startDaemon("--max-running", "1000")
		c := e.client()
		spec := latencyScript(e, 1000)
		const n = 1000
		start := time.Now()
		// Sixteen clients submit at once, as a busy API would be used.
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := w; i < n; i += 16 {
					if _, err := c.Submit(b.Context(), queue.TaskRequest{Prompt: fmt.Sprintf("task %d", i), Grants: []string{e.dir}, Model: spec, Approvals: "auto"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		submitted := time.Since(start)
		db := e.openDB()
		most := 0
		deadline := time.Now().Add(5 * time.Minute)
		for {
			most = max(most, countStatus(db, task.Planning, task.Running, task.Summarizing))
			if countStatus(db, task.Completed, task.Failed, task.Cancelled) == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("tasks not done after 5 minutes")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if failed := countStatus(db, task.Failed, task.Cancelled); failed > 0 {
			b.Fatalf("%d tasks did not complete", failed)
		}
		b.ReportMetric(peakRSS(d.pid), "peak-RSS-MiB")
		b.ReportMetric(float64(most), "max-running")
		b.ReportMetric(time.Since(start).Seconds(), "wall-s")
		b.ReportMetric(float64(n)/submitted.Seconds(), "submit-over-http-tasks/s")
		d.stop()
	}
}

// BenchmarkDaemonRestart kills the daemon (SIGKILL) with 64 tasks running and measures the time
// from starting a new daemon to every interrupted task having moved on (a new event after the
// restart). Target ≤ 2 s.
func BenchmarkDaemonRestart(b *testing.B) {
	for range b.N {
		e := newEnv(b)
		d := e.startDaemon("--max-running", "64")
		c := e.client()
		turns := []map[string]any{{"tool_calls": []any{obj{"name": "update_plan", "input": planCall("write")}}}}
		for i := range 30 {
			turns = append(turns, map[string]any{"delay_ms": 200, "tool_calls": []any{obj{"name": "write_file", "input": obj{"path": fmt.Sprintf("${task}-%d.txt", i), "content": "x"}}}})
		}
		spec := e.script(turns...)
		var ids []string
		for i := range 64 {
			v, err := c.Submit(b.Context(), queue.TaskRequest{Prompt: fmt.Sprintf("task %d", i), Grants: []string{e.dir}, Model: spec, Approvals: "auto"})
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, v.ID)
		}
		db := e.openDB()
		for countStatus(db, task.Running) < 64 {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		d.kill()
		last := map[string]int64{}
		for _, id := range ids {
			last[id], _ = db.LastSeq(context.Background(), id)
		}
		start := time.Now()
		d.start()
		started := time.Since(start)
		for {
			moved := 0
			for _, id := range ids {
				if s, _ := db.LastSeq(context.Background(), id); s > last[id] {
					moved++
				}
			}
			if moved == len(ids) {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%d of %d tasks moved on a minute after the restart", moved, len(ids))
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "restart-to-all-running-ms")
		b.ReportMetric(float64(started.Milliseconds()), "daemon-ready-ms")
		d.kill()
	}
}
