package queue

import (
	"context"

	"github.com/keepup/keepup/internal/store"
)

// maxGroup bounds how many submissions share one commit.
const maxGroup = 128

// groupReq is one batch waiting to be committed with others.
type groupReq struct {
	b    *store.Batch
	done chan error
}

// commitGrouped commits b together with the batches other goroutines are committing at the
// same moment, in one transaction: SQLite's cost is per transaction, so a burst of submissions
// (an API under load, a schedule firing) is written at the rate of many per commit. A batch
// that fails the shared commit is retried alone, so one bad batch fails only itself.
func (q *Queue) commitGrouped(ctx context.Context, b *store.Batch) error {
	r := &groupReq{b: b, done: make(chan error, 1)}
	q.groupMu.Lock()
	q.groupQ = append(q.groupQ, r)
	leader := !q.grouping
	q.grouping = true
	q.groupMu.Unlock()
	if leader {
		q.runGroups(ctx)
	}
	return <-r.done
}

// runGroups commits queued batches until none are left; one goroutine at a time runs it.
func (q *Queue) runGroups(ctx context.Context) {
	for {
		q.groupMu.Lock()
		reqs := q.groupQ
		if len(reqs) > maxGroup {
			reqs = reqs[:maxGroup]
		}
		q.groupQ = q.groupQ[len(reqs):]
		if len(reqs) == 0 {
			q.grouping = false
			q.groupMu.Unlock()
			return
		}
		q.groupMu.Unlock()
		if len(reqs) == 1 {
			reqs[0].done <- q.commit(ctx, reqs[0].b)
			continue
		}
		merged := &store.Batch{}
		for _, r := range reqs {
			if r.b.Task != nil {
				merged.More = append(merged.More, r.b.Task)
			}
			merged.More = append(merged.More, r.b.More...)
			merged.Events = append(merged.Events, r.b.Events...)
			merged.Audit = append(merged.Audit, r.b.Audit...)
			merged.Jobs = append(merged.Jobs, r.b.Jobs...)
		}
		if err := q.commit(ctx, merged); err == nil {
			for _, r := range reqs {
				r.done <- nil
			}
			continue
		}
		for _, r := range reqs {
			r.done <- q.commit(ctx, r.b)
		}
	}
}
