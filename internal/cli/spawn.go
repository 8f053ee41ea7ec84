package cli

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/sandbox"
	"github.com/keepup/keepup/internal/scope"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
)

// localSpawner runs a `keepup run`'s subagents in this process, in parallel (at most
// Limits.MaxConcurrent at once), each as a task of its own in the parent's session. It is the
// daemon-less counterpart of the queue's spawner: same children, same limits, no crash
// recovery (a killed `keepup run` ends its subagents too).
type localSpawner struct {
	base    agent.Config // the parent's configuration: store, policy, person, sandbox...
	set     *settings
	st      *State
	backend sandbox.Backend
	eg      *sessionEgress
	parent  *scope.Session

	mu   sync.Mutex
	sems map[string]chan struct{} // parent task id -> its children's slots
}

func (s *localSpawner) sem(parent string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sems == nil {
		s.sems = map[string]chan struct{}{}
	}
	if s.sems[parent] == nil {
		s.sems[parent] = make(chan struct{}, s.base.Limits.MaxConcurrent)
	}
	return s.sems[parent]
}

func (s *localSpawner) Spawn(ctx context.Context, parent *task.Task, callID string, children []*task.Task, progress func(string, task.State)) ([]agent.ChildResult, error) {
	results := make([]agent.ChildResult, len(children))
	sem := s.sem(parent.ID)
	var wg sync.WaitGroup
	for i, c := range children {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = agent.ChildResult{Task: c.ID, Title: c.Title, Status: task.Cancelled, Error: "cancelled before it started"}
				return
			}
			defer func() { <-sem }()
			progress(c.ID, task.Planning)
			results[i] = s.run(ctx, c)
			progress(c.ID, results[i].Status)
		})
	}
	wg.Wait()
	return results, nil
}

// run runs one child to its end and returns what goes back to the parent. A child that
// cannot run is a failed child, reported, never dropped.
func (s *localSpawner) run(ctx context.Context, c *task.Task) agent.ChildResult {
	res := agent.ChildResult{Task: c.ID, Title: c.Title}
	fail := func(err error) agent.ChildResult {
		res.Status, res.Error = task.Failed, err.Error()
		return res
	}
	cfg := s.base
	cfg.Task = c
	cfg.OnText = nil
	if c.MaxTurns > 0 {
		cfg.Budgets.MaxTurns = c.MaxTurns
	}
	prov, _, err := openModel(c.Model, s.st.Getenv, s.set)
	if err != nil {
		return fail(err)
	}
	cfg.Provider = prov
	if !sameGrants(c.Grants, s.parent) {
		// Narrower grants: the child sees only its folders, in its file tools and in a
		// sandbox of its own (started on its first command).
		sess, err := reopenSession(c, s.set.home)
		if err != nil {
			return fail(err)
		}
		defer sess.Close()
		spec := sandboxSpec(sess)
		spec.Network = s.eg.network()
		ss := &sharedSession{eg: s.eg, spec: spec, backend: s.backend}
		defer ss.closeSandbox() // the proxy is the parent's
		cfg.Session, cfg.Sandbox = sess, lazySandbox{ss}
	}
	r, err := agent.New(cfg)
	if err != nil {
		return fail(err)
	}
	final, err := r.Run(ctx)
	if err != nil {
		return fail(err)
	}
	res.Status, res.Summary, res.Error, res.Usage = final.Status, final.Summary, final.Error, final.Usage
	if st, err := s.base.Store.(store.Durable).State(context.WithoutCancel(ctx), c.ID); err == nil {
		res.Files = agent.FilesWritten(st)
	}
	return res
}

// sameGrants reports whether a child's grants are exactly the session's mounts.
func sameGrants(gs []task.Grant, sess *scope.Session) bool {
	if len(gs) != len(sess.Mounts) {
		return false
	}
	for _, m := range sess.Mounts {
		if !slices.Contains(gs, task.Grant{Name: m.Name, Path: m.Path, Mode: string(m.Mode)}) {
			return false
		}
	}
	return true
}

// reopenSession opens the session of a task record as it was created: its grants, outputs and
// uploads, copying nothing.
func reopenSession(t *task.Task, home string) (*scope.Session, error) {
	cfg := t.SessionConfig()
	cfg.Home = home
	sess, err := scope.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", t.ID, err)
	}
	return sess, nil
}
