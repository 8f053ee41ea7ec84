package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
)

// benchQueue is a queue on a fresh database with the test runtime (script model, no sandbox).
func benchQueue(b *testing.B, maxRunning int, start bool) (*Queue, *sqlite.DB, string, string) {
	b.Helper()
	root := b.TempDir()
	dir := filepath.Join(root, "work")
	os.MkdirAll(dir, 0o755)
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(root, "home", "keepup.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	q, err := New(context.Background(), Config{DB: db, Runtime: &testRuntime{home: filepath.Join(root, "home")},
		MaxRunning: maxRunning, PollInterval: 20 * time.Millisecond, ScheduleEvery: time.Hour,
		Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	if start {
		if err := q.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { q.Stop(context.Background()) })
	}
	return q, db, dir, root
}

// benchScript: a plan, `writes` turns of one write each, a final text; each turn takes
// latencyMS.
func benchScript(b *testing.B, root string, writes, latencyMS int) string {
	turns := []string{fmt.Sprintf(`{"delay_ms": %d, "tool_calls": [{"name": "update_plan", "input": {"items": [{"id": "1", "title": "w", "status": "in_progress"}]}}]}`, latencyMS)}
	for i := range writes {
		turns = append(turns, fmt.Sprintf(`{"delay_ms": %d, "tool_calls": [{"name": "write_file", "input": {"path": "${task}-%d.txt", "content": "x"}}]}`, latencyMS, i))
	}
	turns = append(turns, fmt.Sprintf(`{"delay_ms": %d, "text": "Done."}`, latencyMS))
	p := filepath.Join(root, fmt.Sprintf("bench-%d-%d.json", writes, latencyMS))
	os.WriteFile(p, []byte(`{"turns": [`+strings.Join(turns, ",")+`]}`), 0o644)
	return "script:" + p
}

func waitDone(b *testing.B, db *sqlite.DB, n int, within time.Duration) {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		done, err := db.Tasks(context.Background(), store.TaskFilter{Status: []task.State{task.Completed, task.Failed, task.Cancelled}})
		if err != nil {
			b.Fatal(err)
		}
		if len(done) >= n {
			for _, t := range done {
				if t.Status != task.Completed {
					b.Fatalf("task %s ended %s: %s", t.ID, t.Status, t.Error)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d tasks done after %s", len(done), n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkThroughput measures tasks completed per second with 1, 8 and 64 running at once, with
// the script model answering at once and after 1 s. A task is 4 turns (plan, two writes, final
// text) plus the summary turn. Run with -benchtime 1x: each run queues a batch and times it.
func BenchmarkThroughput(b *testing.B) {
	for _, lat := range []int{0, 1000} {
		for _, running := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("latency=%dms/running=%d", lat, running), func(b *testing.B) {
				n := running * 4
				if lat > 0 {
					n = running * 2
				}
				if lat == 0 && running == 1 {
					n = 20
				}
				var total time.Duration
				for range b.N {
					q, db, dir, root := benchQueue(b, running, true)
					spec := benchScript(b, root, 2, lat)
					start := time.Now()
					for range n {
						if _, err := q.Submit(context.Background(), TaskRequest{Prompt: "bench", Grants: []string{dir}, Model: spec}); err != nil {
							b.Fatal(err)
						}
					}
					waitDone(b, db, n, 10*time.Minute)
					total += time.Since(start)
				}
				b.ReportMetric(float64(n*b.N)/total.Seconds(), "tasks/s")
			})
		}
	}
}

// BenchmarkEnqueue measures Submit: validate, prepare the session on disk, store the task with
// its event, audit entry and River job. "clients" submit concurrently, as API clients would;
// their submissions share commits.
func BenchmarkEnqueue(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			q, _, dir, root := benchQueue(b, 1, false)
			spec := benchScript(b, root, 1, 0)
			req := TaskRequest{Prompt: "bench", Grants: []string{dir}, Model: spec}
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			per := (b.N + clients - 1) / clients
			for range clients {
				wg.Go(func() {
					for range per {
						if _, err := q.Submit(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(per*clients)/time.Since(start).Seconds(), "tasks/s")
		})
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
