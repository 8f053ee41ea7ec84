package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/keepup/keepup/internal/event"
	"github.com/keepup/keepup/internal/model"
	"github.com/keepup/keepup/internal/store"
)

// contextTokens estimates the size of the conversation: what the provider reported for the last
// call plus about four characters a token for what was added since.
func contextTokens(last model.Usage, added []model.Message) int64 {
	n := last.InputTokens + last.OutputTokens
	for _, m := range added {
		n += int64(messageChars(m) / 4)
	}
	return n
}

func messageChars(m model.Message) int {
	n := 0
	for _, b := range m.Content {
		n += len(b.Text) + len(b.Input) + len(b.Content)
	}
	return n
}

// maybeCompact replaces older turns by a structured summary when the conversation nears the
// model's window. The first message (the person's prompt) and the last KeepMessages messages
// stay; the summary restates the plan, the files read and written, decisions and open questions,
// so finished subtasks are not redone.
func (r *Runner) maybeCompact(ctx context.Context, last model.Usage) error {
	before := contextTokens(last, r.msgs[len(r.msgs)-1:])
	limit := int64(float64(r.cfg.ContextWindow) * r.cfg.CompactAt)
	if before < limit || len(r.msgs) <= r.cfg.KeepMessages+1 {
		return nil
	}
	// The kept tail must start with an assistant message so that every tool result still
	// follows its call.
	cut := len(r.msgs) - r.cfg.KeepMessages
	for cut < len(r.msgs) && r.msgs[cut].Role != model.RoleAssistant {
		cut++
	}
	if cut >= len(r.msgs) || cut <= 1 {
		return nil
	}
	dropped := r.msgs[1:cut]
	summary := r.compactionSummary(dropped)
	first := model.Message{Role: model.RoleUser, Content: []model.Block{{Type: model.BlockText, Text: r.firstMessage() + "\n\n" + summary}}}
	kept := append([]model.Message{first}, r.msgs[cut:]...)
	after := int64(0)
	for _, m := range kept {
		after += int64(messageChars(m) / 4)
	}
	r.msgs = kept
	r.msgN = append([]int64{0}, r.msgN[cut:]...)
	r.from = r.msgN[1]
	b := &store.Batch{}
	r.checkpoint(b)
	r.addEvent(b, event.ContextCompacted, map[string]any{
		"messages_dropped": len(dropped), "messages_kept": len(kept),
		"tokens_before": before, "tokens_after_estimate": after, "summary": summary,
	})
	r.addAudit(b, "context.compacted", map[string]any{"messages_dropped": len(dropped), "tokens_before": before})
	return r.commit(ctx, b)
}

func (r *Runner) compactionSummary(dropped []model.Message) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "[keepup: %d earlier messages were compacted. This summary replaces them; do not redo finished subtasks.]\n", len(dropped))
	sb.WriteString("\nPlan:\n")
	if len(r.t.Plan) == 0 {
		sb.WriteString("- (no plan yet)\n")
	}
	for _, it := range r.t.Plan {
		mark := " "
		switch it.Status {
		case "done":
			mark = "x"
		case "skipped":
			mark = "-"
		case "in_progress":
			mark = ">"
		case "failed":
			mark = "!"
		}
		fmt.Fprintf(&sb, "- [%s] %s: %s (%s)\n", mark, it.ID, it.Title, it.Status)
	}
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&sb, "\n%s:\n", title)
		for _, s := range items {
			fmt.Fprintf(&sb, "- %s\n", s)
		}
	}
	list("Files read", sortedKeys(r.filesRead))
	list("Files written, moved or deleted", sortedKeys(r.filesWritten))
	list("Decisions", r.decisions)
	list("Questions asked", r.questions)
	var notes []string
	for _, m := range dropped {
		if m.Role == model.RoleAssistant {
			if t := strings.TrimSpace(m.Text()); t != "" && t != "(no text)" {
				notes = append(notes, clip(strings.ReplaceAll(t, "\n", " "), 300))
			}
		}
	}
	if len(notes) > 12 {
		notes = notes[len(notes)-12:]
	}
	list("Your notes from those turns", notes)
	return sb.String()
}
