// Package event owns the event schema of DESIGN.md: the record written to the journal, printed
// by --json and streamed over SSE. It must never decide anything; it only describes.
package event

import (
	"encoding/json"
	"time"
)

// Event types (DESIGN.md "Events"). Extend only additively.
const (
	TaskCreated       = "task.created"
	TaskStatus        = "task.status"
	PlanUpdated       = "plan.updated"
	ModelTurn         = "model.turn"
	ModelText         = "model.text"
	ModelRetry        = "model.retry"
	ToolRequested     = "tool.requested"
	PolicyDecision    = "policy.decision"
	ApprovalRequested = "approval.requested"
	ApprovalResolved  = "approval.resolved"
	ToolStarted       = "tool.started"
	ToolOutput        = "tool.output"
	ToolResult        = "tool.result"
	ContextCompacted  = "context.compacted"
	SubtaskSpawned    = "subtask.spawned"
	SteerReceived     = "steer.received"
	TaskSummary       = "task.summary"
	TaskFinished      = "task.finished"
)

// Event is one journal record. Seq is strictly increasing per task.
type Event struct {
	Seq     int64           `json:"seq"`
	Time    time.Time       `json:"time"`
	Task    string          `json:"task"`
	Session string          `json:"session"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
}
