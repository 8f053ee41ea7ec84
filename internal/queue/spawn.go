package queue

import (
	"context"
	"strings"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// Spawn is agent.Spawner's: the children of one spawn_subagents call are created (once: a
// second call finds them), announced and enqueued in one commit, and run as tasks of their
// own in the parent's session. While any is unfinished the parent waits (ErrSuspend) holding
// no worker; the last child to end enqueues the parent, which then collects their results.
func (q *Queue) Spawn(ctx context.Context, parent *task.Task, callID string, children []*task.Task, _ func(string, task.State)) ([]agent.ChildResult, error) {
	prefix := agent.ChildPrefix(parent.ID, callID)
	pid := parent.ID
	kids, err := q.db.Tasks(ctx, store.TaskFilter{Parent: &pid})
	if err != nil {
		return nil, err
	}
	have := map[string]*task.Task{}
	for i := range kids {
		if strings.HasPrefix(kids[i].ID, prefix) {
			have[kids[i].ID] = &kids[i]
		}
	}
	active := 0 // the parent's children running or queued with a job
	for i := range kids {
		if !kids[i].Status.Terminal() && !kids[i].Held {
			active++
		}
	}
	b := &store.Batch{}
	now := q.cfg.Now()
	for _, c := range children {
		if _, ok := have[c.ID]; ok {
			continue
		}
		c.Status, c.CreatedAt, c.UpdatedAt = task.Queued, now, now
		// At most Limits.MaxConcurrent children of a task run at once; the others wait
		// without a job, and the parent releases them as the running ones end.
		if active < q.cfg.Limits.MaxConcurrent {
			active++
			b.Jobs = append(b.Jobs, sliceJob(c))
		} else {
			c.Held = true
		}
		b.More = append(b.More, c)
		agent.AddCreated(b, c, agent.GrantsView(c), now)
		have[c.ID] = c
	}
	if len(b.More) > 0 {
		if err := q.commit(ctx, b); err != nil {
			return nil, err
		}
	}
	results := make([]agent.ChildResult, 0, len(children))
	for _, c := range children {
		k := have[c.ID]
		if !k.Status.Terminal() {
			return nil, agent.ErrSuspend
		}
		st, err := q.db.State(ctx, k.ID)
		if err != nil {
			return nil, err
		}
		results = append(results, agent.ChildResult{Task: k.ID, Title: k.Title, Status: k.Status, Summary: k.Summary,
			Error: k.Error, Files: agent.FilesWritten(st), Usage: k.Usage})
	}
	return results, nil
}

// waitingForChildren reports whether t has subagents not yet finished: it waits for them and
// needs no slice now (the last of them enqueues it).
//
// A waiting parent is where held children are released: each child that ends enqueues its
// parent, and the parent's job starts as many held children as the limit allows.
func (q *Queue) waitingForChildren(ctx context.Context, t *task.Task) (bool, error) {
	pid := t.ID
	kids, err := q.db.Tasks(ctx, store.TaskFilter{Parent: &pid,
		Status: []task.State{task.Queued, task.Planning, task.Running, task.AwaitingApproval, task.Paused, task.Summarizing}})
	if err != nil {
		return false, err
	}
	if len(kids) == 0 {
		return false, nil
	}
	active := 0
	var held []*task.Task
	for i := len(kids) - 1; i >= 0; i-- { // oldest first
		if kids[i].Held {
			held = append(held, &kids[i])
		} else {
			active++
		}
	}
	b := &store.Batch{}
	for _, k := range held {
		if active >= q.cfg.Limits.MaxConcurrent {
			break
		}
		active++
		k.Held = false
		b.More = append(b.More, k)
		b.Jobs = append(b.Jobs, sliceJob(k))
	}
	if len(b.More) > 0 {
		if err := q.commit(ctx, b); err != nil {
			return true, err
		}
	}
	return true, nil
}
