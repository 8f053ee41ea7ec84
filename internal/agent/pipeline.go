package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/guard"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/policy"
	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/task"
	"github.com/keepup/keepup/internal/tool"
)

// pending is one call on its way through the pipeline.
type pending struct {
	use      model.Block
	call     *tool.Call
	decision policy.Decision
	result   model.Block
	done     bool // result is final (refused or denied before execution)
	out      *tool.Result
	runErr   error
}

// runCalls takes the tool calls of one turn through the pipeline. Consecutive read-only calls run
// concurrently; every other call runs alone, in the order the model gave.
func (r *Runner) runCalls(ctx context.Context, turn int, uses []model.Block) ([]model.Block, error) {
	results := make([]model.Block, len(uses))
	var group []int
	calls := make([]*pending, len(uses))

	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		var wg sync.WaitGroup
		for _, i := range group {
			p := calls[i]
			if p.done {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.out, p.runErr = p.call.Run(ctx)
			}()
		}
		wg.Wait()
		if errors.Is(context.Cause(ctx), ErrShutdown) {
			return ErrShutdown
		}
		for _, i := range group {
			if err := r.complete(ctx, turn, calls[i]); err != nil {
				return err
			}
			results[i] = calls[i].result
		}
		group = group[:0]
		return nil
	}

	recovered, err := r.recoverCalls(ctx, turn, uses)
	if err != nil {
		return nil, err
	}
	for i, use := range uses {
		p := &pending{use: use}
		calls[i] = p
		if res, ok := recovered[use.ID]; ok {
			p.done, p.result = true, res
			group = append(group, i)
			continue
		}
		if err := r.prepare(ctx, turn, p); err != nil {
			if isSuspend(err) {
				// Reads already journalled as intents run before the task waits, so that
				// none is left looking as if a crash interrupted it.
				if ferr := flush(); ferr != nil {
					return nil, ferr
				}
			}
			return nil, err
		}
		if p.done || concurrent(p.call) {
			group = append(group, i)
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		if ctx.Err() == nil {
			p.out, p.runErr = p.call.Run(ctx)
		} else {
			p.runErr = context.Cause(ctx)
		}
		if errors.Is(context.Cause(ctx), ErrShutdown) {
			// Stopping: the call's outcome is not recorded, so it is in doubt when the task
			// continues (an idempotent call runs again).
			return nil, ErrShutdown
		}
		if errors.Is(p.runErr, ErrSuspend) && ctx.Err() == nil {
			// The call waits for work done elsewhere (subagents); its intent stays journalled
			// and, being idempotent, it runs again when the task continues.
			r.suspended = SuspendChildren
			return nil, errSuspended
		}
		if err := r.complete(ctx, turn, p); err != nil {
			return nil, err
		}
		results[i] = p.result
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	return results, nil
}

// prepare runs the pipeline up to and including the journalled intent: decode, resolve and
// classify (tool.Prepare), the plan gate, policy, approval. A call refused on the way is marked
// done with its error result.
func (r *Runner) prepare(ctx context.Context, turn int, p *pending) error {
	use := p.use
	b := &store.Batch{}
	r.addEvent(b, event.ToolRequested, map[string]any{"tool_call_id": use.ID, "tool": use.Name, "input": clip(use.Input, 2000), "turn": turn})

	refuse := func(msg string, malformed bool) error {
		if malformed {
			r.errStreak++
		}
		p.done = true
		p.result = model.Block{Type: model.BlockToolResult, ToolUseID: use.ID, Content: msg, IsError: true}
		b.Calls = append(b.Calls, store.ToolCall{Task: r.t.ID, ID: use.ID, Turn: turn, Tool: use.Name, Input: use.Input,
			Status: store.CallRefused, Result: clip(msg, 4000), StartedAt: r.cfg.Now(), FinishedAt: r.cfg.Now()})
		r.addEvent(b, event.ToolResult, map[string]any{"tool_call_id": use.ID, "tool": use.Name, "status": "refused", "error": msg})
		r.addAudit(b, "tool.call", map[string]any{"call_id": use.ID, "tool": use.Name, "args_sha256": digest(use.Input), "status": "refused", "error": msg})
		return r.commit(ctx, b)
	}

	if _, known := r.cfg.Tools.Lookup(use.Name); known && !r.mayUse(use.Name) {
		return refuse(fmt.Sprintf("%s is not available to this task", use.Name), false)
	}
	t, input, err := r.cfg.Tools.Decode(use.Name, use.Input)
	if err != nil {
		return refuse(err.Error(), true)
	}
	call, err := t.Prepare(ctx, r.env(use.ID), input)
	if err != nil {
		var rf *tool.Refusal
		if errors.As(err, &rf) {
			return refuse(rf.Msg, false)
		}
		return refuse(fmt.Sprintf("%s failed: %v", use.Name, err), false)
	}
	r.errStreak = 0
	p.call = call

	// The plan gate: nothing but reading and planning happens before the task has a plan.
	if r.t.Status == task.Planning && !readOnlyAction(call.Action) {
		return refuse("make a plan first: call update_plan with the subtasks before changing anything", false)
	}

	// The guard (provenance and sinks) first, then policy; the stricter wins.
	gv := r.rules.Check(r.gctx, call.Action, egressOf(use.Name, input, r.cfg.ExecNetwork))
	d := gv.Apply(r.cfg.Decide(call.Action))
	// Repeating a state-changing call whose outcome a crash left unknown needs the person.
	if d.Verdict == policy.Allow && !readOnlyAction(call.Action) && r.inDoubt[doubtKey(use.Name, string(use.Input))] {
		d = policy.Decision{Verdict: policy.Ask, Effect: d.Effect, Rule: "repeat-after-unknown-outcome", By: policy.ByGuard,
			Reason: "the same call was running when keepup stopped, and its outcome is unknown"}
	}
	// "Yes for this task" covers later calls of the same effect, but never a protected path
	// and never a guard rule: those are confirmed per call and per destination.
	if d.Verdict == policy.Ask && r.approvedForTask[d.Effect] && d.Effect != "" && !touchesProtected(call.Action) && d.By != policy.ByGuard {
		d = policy.Decision{Verdict: policy.Allow, Effect: d.Effect, Rule: "approved-for-task", By: policy.ByUser}
	}
	if d.Verdict == policy.Ask {
		if err := r.commit(ctx, b); err != nil {
			return err
		}
		b = &store.Batch{}
		d, err = r.approve(ctx, use, call, d, gv)
		if errors.Is(err, ErrSuspend) {
			r.suspended = SuspendApproval
			return errSuspended
		}
		if err != nil {
			return err
		}
	}
	p.decision = d
	r.addEvent(b, event.PolicyDecision, map[string]any{
		"tool_call_id": use.ID, "effect": d.Effect, "decision": d.Verdict, "rule": d.Rule, "by": d.By, "reason": d.Reason,
		"summary": call.Action.Summary, "provenance": r.gctx.Label(), "guard": guardFindings(gv),
	})
	if d.Verdict != policy.Allow {
		msg := fmt.Sprintf("not done: %s was denied (%s", call.Action.Summary, d.Rule)
		if d.Reason != "" {
			msg += "; " + d.Reason
		}
		msg += "). Do not try to get around this; continue with the rest of the task or explain in the summary."
		r.decisions = append(r.decisions, fmt.Sprintf("%s: denied by %s", call.Action.Summary, d.Rule))
		p.done = true
		p.result = model.Block{Type: model.BlockToolResult, ToolUseID: use.ID, Content: msg, IsError: true}
		b.Calls = append(b.Calls, store.ToolCall{Task: r.t.ID, ID: use.ID, Turn: turn, Tool: use.Name, Input: use.Input,
			Effect: string(d.Effect), Decision: string(d.Verdict), Status: store.CallRefused, Result: msg, StartedAt: r.cfg.Now(), FinishedAt: r.cfg.Now()})
		r.addEvent(b, event.ToolResult, map[string]any{"tool_call_id": use.ID, "tool": use.Name, "status": "denied", "error": msg,
			"summary": call.Action.Summary, "rule": d.Rule, "by": d.By})
		r.addAudit(b, "tool.call", map[string]any{"call_id": use.ID, "tool": use.Name, "args_sha256": digest(use.Input),
			"effect": d.Effect, "decision": d.Verdict, "rule": d.Rule, "by": d.By, "status": "denied", "summary": call.Action.Summary})
		return r.commit(ctx, b)
	}
	// Journal the intent before anything happens, so that a crash leaves the call in doubt rather
	// than forgotten.
	b.Calls = append(b.Calls, store.ToolCall{Task: r.t.ID, ID: use.ID, Turn: turn, Tool: use.Name, Input: use.Input,
		Effect: string(d.Effect), Decision: string(d.Verdict), Status: store.CallIntent, StartedAt: r.cfg.Now()})
	r.addEvent(b, event.ToolStarted, map[string]any{"tool_call_id": use.ID, "tool": use.Name, "summary": call.Action.Summary})
	return r.commit(ctx, b)
}

// complete journals a call's result, audits it and labels its provenance.
func (r *Runner) complete(ctx context.Context, turn int, p *pending) error {
	if p.done {
		return nil
	}
	use := p.use
	res := p.out
	if p.runErr != nil {
		var rf *tool.Refusal
		switch {
		case errors.As(p.runErr, &rf):
			res = &tool.Result{Content: rf.Msg, IsError: true}
		case ctx.Err() != nil:
			res = &tool.Result{Content: "cancelled: " + p.runErr.Error(), IsError: true}
		default:
			res = &tool.Result{Content: fmt.Sprintf("%s failed: %v", use.Name, p.runErr), IsError: true}
		}
	}
	if res == nil {
		res = &tool.Result{Content: "(no output)"}
	}
	status := store.CallOK
	if res.IsError {
		status = store.CallError
	}
	content := res.Content
	b := &store.Batch{Task: r.t}
	if res.Untrusted {
		// Untrusted content taints the context and reaches the model only wrapped: marked
		// with the session's datamark, invisible characters made visible.
		source := strings.Join(res.Sources, ", ")
		if source == "" {
			source = use.Name
		}
		var files []string
		for _, op := range p.call.Action.Ops {
			if op.Effect == policy.EffectRead && op.Target != nil && !res.IsError {
				files = append(files, op.Target.Grant+"/"+op.Target.Rel)
			}
		}
		r.untrusted(b, source, res.Content, files)
		content = guard.Present(r.datamark, source, res.Content)
	}
	for _, op := range p.call.Action.Ops {
		if op.Target == nil || res.IsError {
			continue
		}
		switch op.Effect {
		case policy.EffectRead:
			r.filesRead[op.Target.Grant+"/"+op.Target.Rel] = true
		case policy.EffectCreate, policy.EffectOverwrite, policy.EffectMove, policy.EffectMoveOut, policy.EffectDelete:
			r.filesWritten[op.Target.Grant+"/"+op.Target.Rel] = true
		}
	}
	p.result = model.Block{Type: model.BlockToolResult, ToolUseID: use.ID, Content: content, IsError: res.IsError}
	// The whole result is journalled: a task continued after a crash hands it to the model
	// again instead of running the call twice.
	b.Calls = append(b.Calls, store.ToolCall{Task: r.t.ID, ID: use.ID, Turn: turn, Tool: use.Name, Input: use.Input,
		Effect: string(p.decision.Effect), Decision: string(p.decision.Verdict), Status: status, Result: content,
		StartedAt: r.cfg.Now(), FinishedAt: r.cfg.Now()})
	data := map[string]any{"tool_call_id": use.ID, "tool": use.Name, "status": string(status), "content": clip(content, 2000), "bytes": len(content)}
	if len(res.Files) > 0 {
		data["files"] = res.Files
	}
	if res.Untrusted {
		data["provenance"] = guard.From(res.Sources...)
	}
	r.addEvent(b, event.ToolResult, data)
	r.addAudit(b, "tool.call", map[string]any{"call_id": use.ID, "tool": use.Name, "args_sha256": digest(use.Input),
		"effect": p.decision.Effect, "decision": p.decision.Verdict, "rule": p.decision.Rule, "by": p.decision.By,
		"status": string(status), "summary": p.call.Action.Summary, "files": res.Files})
	return r.commit(ctx, b)
}

// approve asks a person about one call and records the request and the answer.
func (r *Runner) approve(ctx context.Context, use model.Block, call *tool.Call, d policy.Decision, gv guard.Verdict) (policy.Decision, error) {
	id := ApprovalID(r.t.ID, use.ID)
	var existing *store.Approval
	if r.dur != nil {
		ap, err := r.dur.Approval(ctx, id)
		switch {
		case err == nil:
			existing = ap
		case !errors.Is(err, store.ErrNotFound):
			return d, &storeError{err}
		}
	}
	if existing != nil && existing.Status != store.ApprovalPending {
		// Answered from the inbox while the task waited (or before a restart).
		out := policy.Decision{Effect: d.Effect, By: policy.ByUser, Rule: "user:" + string(AnswerNo)}
		if existing.Status == store.ApprovalApproved {
			out.Verdict, out.Rule = policy.Allow, "user:"+string(AnswerYes)
			if existing.Scope == "task" {
				out.Rule = "user:" + string(AnswerYesTask)
				if d.By != policy.ByGuard && !touchesProtected(call.Action) {
					r.approvedForTask[d.Effect] = true
				}
			}
		} else {
			out.Verdict, out.Reason = policy.Deny, "the user said no"
		}
		return out, nil
	}
	req := ApprovalRequest{
		ID: id, Task: r.t.ID, CallID: use.ID, Tool: use.Name,
		Effect: d.Effect, Summary: call.Action.Summary, Rule: d.Rule, Provenance: r.gctx.Label(),
	}
	if d.By == policy.ByGuard {
		req.Guard = gv.Prompt()
	}
	for _, op := range call.Action.Ops {
		if op.Target != nil {
			req.Targets = append(req.Targets, *op.Target)
		}
	}
	back := r.t.Status
	if back == task.AwaitingApproval { // asked before a restart, still pending
		back = task.Running
		if len(r.t.Plan) == 0 {
			back = task.Planning
		}
	}
	ap := store.Approval{ID: req.ID, Task: r.t.ID, CallID: use.ID, Tool: use.Name, Effect: string(d.Effect),
		Summary: call.Action.Summary, Provenance: provenanceText(r.gctx.Label()), Status: store.ApprovalPending, CreatedAt: r.cfg.Now()}
	if existing == nil {
		if err := r.setStatusWith(ctx, task.AwaitingApproval, call.Action.Summary, func(b *store.Batch) {
			b.Approvals = []store.Approval{ap}
			r.addEvent(b, event.ApprovalRequested, map[string]any{"approval_id": req.ID, "tool_call_id": use.ID, "tool": use.Name,
				"effect": d.Effect, "summary": call.Action.Summary, "rule": d.Rule, "targets": req.Targets, "provenance": r.gctx.Label(), "guard": req.Guard})
			r.addAudit(b, "approval.requested", map[string]any{"approval_id": req.ID, "call_id": use.ID, "effect": d.Effect, "summary": call.Action.Summary, "rule": d.Rule})
		}); err != nil {
			return d, err
		}
	} else {
		ap = *existing
		if r.t.Status != task.AwaitingApproval {
			if err := r.setStatus(ctx, task.AwaitingApproval, call.Action.Summary); err != nil {
				return d, err
			}
		}
	}

	ans, err := r.cfg.Person.Approve(ctx, req)
	if errors.Is(err, ErrSuspend) {
		return d, err
	}
	if err != nil {
		if ctx.Err() != nil {
			return d, context.Cause(ctx)
		}
		ans = AnswerNo
	}
	out := policy.Decision{Effect: d.Effect, By: policy.ByUser, Rule: "user:" + string(ans)}
	ap.Status, ap.By, ap.ResolvedAt, ap.Scope = store.ApprovalApproved, "user", r.cfg.Now(), "call"
	switch ans {
	case AnswerYes:
		out.Verdict = policy.Allow
	case AnswerYesTask:
		out.Verdict = policy.Allow
		ap.Scope = "task"
		r.approvedForTask[d.Effect] = true
	default:
		out.Verdict = policy.Deny
		out.Reason = "the user said no"
		if err != nil {
			out.Reason = "no answer: " + err.Error()
		}
		ap.Status = store.ApprovalDenied
	}
	b := &store.Batch{Approvals: []store.Approval{ap}}
	r.addEvent(b, event.ApprovalResolved, map[string]any{"approval_id": req.ID, "tool_call_id": use.ID, "answer": ans, "scope": ap.Scope, "by": "user"})
	r.addAudit(b, "approval.resolved", map[string]any{"approval_id": req.ID, "call_id": use.ID, "answer": ans, "scope": ap.Scope, "by": "user"})
	if err := r.commit(ctx, b); err != nil {
		return d, err
	}
	if err := r.setStatus(ctx, back, ""); err != nil {
		return d, err
	}
	return out, nil
}

// ApprovalID is the id of the approval of one call: the same after a restart, so that a call
// is never asked about twice.
func ApprovalID(taskID, callID string) string {
	return "a-" + digest(taskID + "\x00" + callID)[:12]
}

// recoverCalls returns the results of this turn's calls that a previous run already settled
// (journalled with a result: never run again), and settles the calls left in doubt (intent
// journalled, no result): an idempotent call runs again through the pipeline; any other is
// recorded as of unknown outcome, and the model is told so.
func (r *Runner) recoverCalls(ctx context.Context, turn int, uses []model.Block) (map[string]model.Block, error) {
	if r.dur == nil || !r.recovering {
		return nil, nil
	}
	r.recovering = false // only the turn a restart left unfinished can have journalled calls
	rows, err := r.cfg.Store.ToolCalls(ctx, r.t.ID)
	if err != nil {
		return nil, &storeError{err}
	}
	byID := make(map[string]store.ToolCall, len(uses))
	want := map[string]bool{}
	for _, u := range uses {
		want[u.ID] = true
	}
	for _, c := range rows {
		if want[c.ID] {
			byID[c.ID] = c
		}
	}
	out := map[string]model.Block{}
	for _, use := range uses {
		c, ok := byID[use.ID]
		if !ok {
			continue
		}
		if res, ok := settled(c); ok {
			out[use.ID] = res
			continue
		}
		// In doubt. Is it safe to run again?
		if t, input, err := r.cfg.Tools.Decode(use.Name, use.Input); err == nil {
			if call, err := t.Prepare(ctx, r.env(use.ID), input); err == nil && call.Idempotent {
				continue // the pipeline runs it again
			}
		}
		msg := unknownOutcome(use.Name)
		r.inDoubt[doubtKey(use.Name, string(use.Input))] = true
		c.Status, c.Result, c.FinishedAt = store.CallUnknown, msg, r.cfg.Now()
		b := &store.Batch{Calls: []store.ToolCall{c}}
		r.addEvent(b, event.ToolResult, map[string]any{"tool_call_id": use.ID, "tool": use.Name, "status": string(store.CallUnknown), "error": msg})
		r.addAudit(b, "tool.call", map[string]any{"call_id": use.ID, "tool": use.Name, "args_sha256": digest(use.Input),
			"effect": c.Effect, "decision": c.Decision, "status": string(store.CallUnknown)})
		r.decisions = append(r.decisions, fmt.Sprintf("%s (%s): outcome unknown after a restart", use.Name, use.ID))
		if err := r.commit(ctx, b); err != nil {
			return nil, err
		}
		out[use.ID] = model.Block{Type: model.BlockToolResult, ToolUseID: use.ID, Content: msg, IsError: true}
	}
	return out, nil
}

// env is what the tool call callID may use.
func (r *Runner) env(callID string) *tool.Env {
	return &tool.Env{
		Session: r.cfg.Session,
		Task:    r.t.ID,
		Plan:    r.setPlan,
		Ask:     r.ask,
		Sandbox: r.cfg.Sandbox,
		Web:     r.cfg.Web,
		Spawn:   r.spawn(callID),
		Output: func(stream, chunk string) {
			b := &store.Batch{}
			r.addEvent(b, event.ToolOutput, map[string]any{"tool_call_id": callID, "stream": stream, "chunk": chunk})
			_ = r.commit(context.Background(), b) // a lost chunk is still in the tool's result
		},
	}
}

// setPlan stores a new plan; the first plan moves the task from planning to running.
func (r *Runner) setPlan(ctx context.Context, p task.Plan) error {
	// Subagents stay on the plan whatever the model sends: they are the runtime's to show.
	for _, it := range r.t.Plan {
		if it.Owner != "" && it.Owner == it.ID && !slices.ContainsFunc(p, func(x task.PlanItem) bool { return x.ID == it.ID }) {
			p = append(p, it)
		}
	}
	if err := p.Validate(); err != nil {
		return &tool.Refusal{Msg: err.Error()}
	}
	r.planMu.Lock()
	r.t.Plan = p
	r.planMu.Unlock()
	r.t.UpdatedAt = r.cfg.Now()
	b := &store.Batch{Task: r.t}
	r.addEvent(b, event.PlanUpdated, map[string]any{"items": p})
	if err := r.commit(ctx, b); err != nil {
		return err
	}
	if r.t.Status == task.Planning {
		return r.setStatus(ctx, task.Running, "")
	}
	return nil
}

func (r *Runner) ask(ctx context.Context, q string) (string, error) {
	a, err := r.cfg.Person.Answer(ctx, q)
	if err != nil {
		r.questions = append(r.questions, q+" (unanswered)")
		return "", err
	}
	r.questions = append(r.questions, q+" -> "+a)
	return a, nil
}

// concurrent reports whether a call may run alongside the other reads of its turn: only reads
// of files do; planning and questions keep their order.
func concurrent(c *tool.Call) bool {
	if !c.ReadOnly || len(c.Action.Ops) == 0 {
		return false
	}
	for _, op := range c.Action.Ops {
		if op.Effect != policy.EffectRead {
			return false
		}
	}
	return true
}

func touchesProtected(a policy.Action) bool {
	for _, op := range a.Ops {
		if op.Target != nil && op.Target.Protected {
			return true
		}
	}
	return false
}

func readOnlyAction(a policy.Action) bool {
	for _, op := range a.Ops {
		if op.Effect != policy.EffectRead && op.Effect != policy.EffectNone {
			return false
		}
	}
	return true
}

func provenanceText(l guard.Label) string {
	if src := l.UntrustedSources(); len(src) > 0 {
		return "follows content from " + strings.Join(src, ", ")
	}
	return "follows your request only"
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string { return tool.Clip(s, n) }

// egressOf describes what a call would send out, for the guard: a web fetch's URL, a command
// line's destinations (network: the sandbox reaches allowed hosts through the proxy).
func egressOf(tool string, input []byte, network bool) *guard.Egress {
	var in struct {
		URL     string `json:"url"`
		Command string `json:"command"`
	}
	_ = json.Unmarshal(input, &in)
	switch {
	case tool == "web_fetch" && in.URL != "":
		return guard.FetchEgress(in.URL)
	case tool == "bash" && in.Command != "":
		return guard.CommandEgress(in.Command, network)
	}
	return nil
}

// guardFindings is what a policy.decision event records of the guard: nothing when no rule
// fired.
func guardFindings(v guard.Verdict) any {
	if !v.Fired() {
		return nil
	}
	return v
}
