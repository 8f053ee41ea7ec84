package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/keepup/keepup/internal/agent"
	"github.com/keepup/keepup/internal/store"
)

// Missed-run policies.
const (
	MissedSkip    = "skip"
	MissedRunOnce = "run_once"
)

// scheduleSpec is what a stored schedule's Spec holds.
type scheduleSpec struct {
	Request TaskRequest `json:"request"`
	Cron    string      `json:"cron"`
	Missed  string      `json:"missed"`
}

// ParseCron parses a standard five-field cron expression or a descriptor (@hourly, @daily,
// @every 10m, ...). Times are UTC.
func ParseCron(expr string) (cron.Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, errors.New("empty; want five fields (minute hour day-of-month month day-of-week) or a descriptor such as @hourly")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, errors.New("time zones are not supported; schedules are in UTC")
	}
	s, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", expr, err)
	}
	return s, nil
}

// AddSchedule stores a schedule that creates a task from req at every slot of req.Schedule.
func (q *Queue) AddSchedule(ctx context.Context, req TaskRequest) (*Schedule, error) {
	if req.Schedule == nil {
		return nil, inputErr("schedule", "missing")
	}
	spec := scheduleSpec{Cron: strings.TrimSpace(req.Schedule.Cron), Missed: req.Schedule.Missed}
	sched, err := ParseCron(spec.Cron)
	if err != nil {
		return nil, inputErr("schedule.cron", "%v", err)
	}
	switch spec.Missed {
	case "":
		spec.Missed = MissedSkip
	case MissedSkip, MissedRunOnce:
	default:
		return nil, inputErr("schedule.missed", "%q; want skip or run_once", spec.Missed)
	}
	req.Schedule = nil
	if err := checkRequest(&req); err != nil {
		return nil, err
	}
	if err := q.cfg.Runtime.Check(ctx, req); err != nil {
		return nil, err
	}
	spec.Request = req
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	now := q.cfg.Now().UTC()
	s := store.Schedule{ID: newScheduleID(), Spec: raw, Next: sched.Next(now), CreatedAt: now}
	if err := q.commit(ctx, &store.Batch{Schedules: []store.Schedule{s}}); err != nil {
		return nil, err
	}
	out := toSchedule(s, spec)
	return &out, nil
}

func newScheduleID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return "s-" + hex.EncodeToString(b)
}

func toSchedule(s store.Schedule, spec scheduleSpec) Schedule {
	return Schedule{ID: s.ID, Request: spec.Request, Cron: spec.Cron, Missed: spec.Missed, Next: s.Next,
		LastSlot: s.LastSlot, LastTask: s.LastTask, CreatedAt: s.CreatedAt}
}

// Schedules lists the schedules, the next to fire first.
func (q *Queue) Schedules(ctx context.Context) ([]Schedule, error) {
	ss, err := q.db.Schedules(ctx, time.Time{})
	if err != nil {
		return nil, err
	}
	out := make([]Schedule, 0, len(ss))
	for _, s := range ss {
		var spec scheduleSpec
		if err := json.Unmarshal(s.Spec, &spec); err != nil {
			return nil, fmt.Errorf("schedule %s: %w", s.ID, err)
		}
		out = append(out, toSchedule(s, spec))
	}
	return out, nil
}

// DeleteSchedule removes a schedule; tasks it created are not touched.
func (q *Queue) DeleteSchedule(ctx context.Context, id string) error {
	return q.commit(ctx, &store.Batch{Unschedule: []string{id}})
}

func (q *Queue) scheduleLoop(ctx context.Context) {
	tick := time.NewTicker(q.cfg.ScheduleEvery)
	defer tick.Stop()
	for {
		if err := q.FireDue(ctx); err != nil && ctx.Err() == nil {
			q.cfg.Logger.Warn("schedules", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// maxSlotsScanned bounds the slots looked at for one schedule at once (a minutely schedule
// after a week down has ~10,000).
const maxSlotsScanned = 100_000

// FireDue creates the tasks of every slot due now. A slot's task and the schedule's next slot
// commit together, so each slot runs once, also across restarts. Slots more than MissedAfter
// late were missed: skipped, or (run_once) run as one task for the latest of them when no slot
// is on time.
func (q *Queue) FireDue(ctx context.Context) error {
	now := q.cfg.Now().UTC()
	due, err := q.db.Schedules(ctx, now)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range due {
		if err := q.fire(ctx, s, now); err != nil {
			errs = append(errs, fmt.Errorf("schedule %s: %w", s.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (q *Queue) fire(ctx context.Context, s store.Schedule, now time.Time) error {
	var spec scheduleSpec
	if err := json.Unmarshal(s.Spec, &spec); err != nil {
		return err
	}
	sched, err := ParseCron(spec.Cron)
	if err != nil {
		return err
	}
	var onTime, missed []time.Time
	slot := s.Next
	for i := 0; !slot.IsZero() && !slot.After(now) && i < maxSlotsScanned; i++ {
		if now.Sub(slot) <= q.cfg.MissedAfter {
			onTime = append(onTime, slot)
		} else {
			missed = append(missed, slot)
		}
		slot = sched.Next(slot)
	}
	fire := onTime
	if len(onTime) == 0 && len(missed) > 0 && spec.Missed == MissedRunOnce {
		fire = missed[len(missed)-1:]
	}
	b := &store.Batch{}
	s.Next = sched.Next(now)
	for _, slot := range fire {
		req := spec.Request
		t, err := q.newTask(ctx, req, slotTaskID(s.ID, slot))
		if err != nil {
			return err
		}
		t.Schedule, t.Slot = s.ID, slot
		b.More = append(b.More, t)
		agent.AddCreated(b, t, agent.GrantsView(t), q.cfg.Now())
		b.Jobs = append(b.Jobs, sliceJob(t))
		s.LastSlot, s.LastTask = slot, t.ID
	}
	b.Schedules = []store.Schedule{s}
	if len(missed) > 0 {
		q.cfg.Logger.Info("schedule slots missed while keepup was not running", "schedule", s.ID, "missed", len(missed), "policy", spec.Missed)
	}
	return q.commit(ctx, b)
}

// slotTaskID is the id of the task of one slot: the same however often the slot is looked at.
func slotTaskID(scheduleID string, slot time.Time) string {
	sum := sha256.Sum256([]byte(scheduleID + "\x00" + slot.UTC().Format(time.RFC3339Nano)))
	return "t-" + hex.EncodeToString(sum[:5])
}
