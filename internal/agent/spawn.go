package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
	"github.com/keepup/keepup/internal/tool"
)

// spawn is Env.Spawn for the call callID: it holds the model to the limits, builds the
// children (never with more than the parent), shows them in the parent's plan and hands them
// to the Spawner.
func (r *Runner) spawn(callID string) func(ctx context.Context, briefs []tool.Brief) ([]tool.ChildResult, error) {
	if r.cfg.Spawner == nil {
		return nil
	}
	return func(ctx context.Context, briefs []tool.Brief) ([]tool.ChildResult, error) {
		lim := r.cfg.Limits
		if r.t.Depth+1 > lim.MaxDepth {
			return nil, tool.Refusef("spawn_subagents: this task is at depth %d and subagents may go only to depth %d; do the work yourself", r.t.Depth, lim.MaxDepth)
		}
		prefix := ChildPrefix(r.t.ID, callID)
		others := 0
		if r.dur != nil {
			parent := r.t.ID
			kids, err := r.cfg.Store.Tasks(ctx, store.TaskFilter{Parent: &parent})
			if err != nil {
				return nil, &storeError{err}
			}
			for _, k := range kids {
				if !strings.HasPrefix(k.ID, prefix) {
					others++
				}
			}
		}
		if others+len(briefs) > lim.MaxChildren {
			return nil, tool.Refusef("spawn_subagents: a task may start at most %d subagents; %d started already and this call asks for %d", lim.MaxChildren, others, len(briefs))
		}
		children := make([]*task.Task, 0, len(briefs))
		for i, b := range briefs {
			c, err := r.childTask(callID, i, b)
			if err != nil {
				return nil, err
			}
			children = append(children, c)
		}
		if err := r.showChildren(ctx, callID, children); err != nil {
			return nil, err
		}
		results, err := r.cfg.Spawner.Spawn(ctx, r.t, callID, children, func(child string, st task.State) {
			_ = r.childStatus(context.WithoutCancel(ctx), child, st)
		})
		if err != nil {
			return nil, err
		}
		for _, res := range results {
			if err := r.childStatus(ctx, res.Task, res.Status); err != nil {
				return nil, err
			}
		}
		// The children's tokens reach the store only with the call's journalled result: a
		// spawn run again after a crash adds them once.
		for _, res := range results {
			r.t.Usage.InputTokens += res.Usage.InputTokens
			r.t.Usage.OutputTokens += res.Usage.OutputTokens
		}
		return results, nil
	}
}

// ChildPrefix is the id prefix of the children one spawn_subagents call creates: the same
// after a restart, so that running the call again finds them.
func ChildPrefix(parentID, callID string) string {
	return parentID + "." + digest(callID)[:4] + "-"
}

// childTask builds the i-th child of call callID from its brief: the parent's model, approval
// mode and session; grants and tools only as the brief narrows them.
func (r *Runner) childTask(callID string, i int, b tool.Brief) (*task.Task, error) {
	c := &task.Task{
		ID:        fmt.Sprintf("%s%d", ChildPrefix(r.t.ID, callID), i+1),
		Session:   r.t.Session,
		Parent:    r.t.ID,
		Prompt:    "Subtask \"" + b.Title + "\" of a larger task.\n\n" + b.Instructions,
		Status:    task.Queued,
		Model:     r.t.Model,
		Approvals: r.t.Approvals,
		Outputs:   r.t.Outputs,
		Options: task.Options{Priority: r.t.Priority, MaxTurns: r.t.MaxTurns, Depth: r.t.Depth + 1,
			Call: callID, Title: b.Title},
	}
	// Grants: the parent's, or the named ones of them, never wider.
	parentGrants := map[string]task.Grant{}
	var names []string
	for _, g := range r.t.Grants {
		parentGrants[g.Name] = g
		if g.Name != scope.OutputsName && g.Name != scope.UploadsName {
			names = append(names, g.Name)
		}
	}
	if len(b.Grants) == 0 {
		c.Grants = append([]task.Grant(nil), r.t.Grants...)
	} else {
		seen := map[string]bool{}
		for _, spec := range b.Grants {
			name, mode, _ := strings.Cut(spec, ":")
			g, ok := parentGrants[name]
			if !ok || name == scope.OutputsName || name == scope.UploadsName {
				return nil, tool.Refusef("spawn_subagents: tasks[%d].grants: %q is not one of this task's grants (%s)", i, name, strings.Join(names, ", "))
			}
			switch mode {
			case "", g.Mode:
			case "ro":
				g.Mode = "ro"
			default:
				return nil, tool.Refusef("spawn_subagents: tasks[%d].grants: %q: a subagent cannot have %q where this task has %q", i, spec, mode, g.Mode)
			}
			if !seen[name] {
				seen[name] = true
				c.Grants = append(c.Grants, g)
			}
		}
		// Outputs and uploads come with the session.
		for _, n := range []string{scope.OutputsName, scope.UploadsName} {
			if g, ok := parentGrants[n]; ok {
				c.Grants = append(c.Grants, g)
			}
		}
	}
	// Tools: the parent's, or the named ones of them.
	allowed := r.toolNames()
	if len(b.Tools) == 0 {
		c.Tools = allowed
	} else {
		for _, name := range b.Tools {
			if !slices.Contains(allowed, name) {
				return nil, tool.Refusef("spawn_subagents: tasks[%d].tools: %q is not one of this task's tools (%s)", i, name, strings.Join(allowed, ", "))
			}
			if !slices.Contains(c.Tools, name) {
				c.Tools = append(c.Tools, name)
			}
		}
	}
	if c.Depth >= r.cfg.Limits.MaxDepth {
		c.Tools = slices.DeleteFunc(c.Tools, func(n string) bool { return n == "spawn_subagents" })
	}
	sort.Strings(c.Tools)
	return c, nil
}

// toolNames are the tools this task may use.
func (r *Runner) toolNames() []string {
	var out []string
	for _, s := range r.cfg.Tools.Specs() {
		if r.mayUse(s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// mayUse reports whether the task may call a tool: a subagent's brief may narrow the tools,
// spawning is only for tasks with a Spawner and below the depth limit.
func (r *Runner) mayUse(name string) bool {
	if name == "spawn_subagents" && (r.cfg.Spawner == nil || r.t.Depth >= r.cfg.Limits.MaxDepth) {
		return false
	}
	return len(r.t.Tools) == 0 || slices.Contains(r.t.Tools, name)
}

// showChildren adds the children to the parent's plan as subtasks and records their spawning.
func (r *Runner) showChildren(ctx context.Context, callID string, children []*task.Task) error {
	b := &store.Batch{Task: r.t}
	changed := false
	for _, c := range children {
		if slices.ContainsFunc(r.t.Plan, func(it task.PlanItem) bool { return it.ID == c.ID }) {
			continue
		}
		r.t.Plan = append(r.t.Plan, task.PlanItem{ID: c.ID, Title: c.Title, Status: task.Pending, Owner: c.ID})
		changed = true
		r.addEvent(b, event.SubtaskSpawned, map[string]any{"tool_call_id": callID, "child": c.ID, "title": c.Title,
			"depth": c.Depth, "grants": c.Grants, "tools": c.Tools})
		r.addAudit(b, "subtask.spawned", map[string]any{"call_id": callID, "child": c.ID, "title": c.Title, "grants": c.Grants, "tools": c.Tools})
	}
	if !changed {
		return nil
	}
	r.addEvent(b, event.PlanUpdated, map[string]any{"items": r.t.Plan})
	return r.commit(ctx, b)
}

// childStatus shows a child's status on its item of the parent's plan.
func (r *Runner) childStatus(ctx context.Context, child string, st task.State) error {
	want := PlanStatus(st)
	r.planMu.Lock() // children report from their own goroutines
	defer r.planMu.Unlock()
	i := slices.IndexFunc(r.t.Plan, func(it task.PlanItem) bool { return it.ID == child })
	if i < 0 || r.t.Plan[i].Status == want {
		return nil
	}
	r.t.Plan[i].Status = want
	b := &store.Batch{Task: r.t}
	r.addEvent(b, event.PlanUpdated, map[string]any{"items": r.t.Plan})
	return r.commit(ctx, b)
}

// PlanStatus is how a child's state shows on its parent's plan.
func PlanStatus(st task.State) task.ItemStatus {
	switch st {
	case task.Completed:
		return task.Done
	case task.Failed:
		return task.ItemFailed
	case task.Cancelled:
		return task.Skipped
	case task.Queued:
		return task.Pending
	}
	return task.InProgress
}

// toolSpecs are the specs of the tools this task may use.
func (r *Runner) toolSpecs() []model.ToolSpec {
	all := r.cfg.Tools.Specs()
	out := all[:0:0]
	for _, s := range all {
		if r.mayUse(s.Name) {
			out = append(out, s)
		}
	}
	return out
}
