package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/keepup/keepup/internal/task"
)

// demoReceipt is one sample receipt of the demo folder.
type demoReceipt struct {
	file, vendor, date, category string
	cents                        int
}

var demoReceipts = []demoReceipt{
	{"receipts/2026-10-02-taxi.txt", "City Cabs", "2026-10-02", "travel", 2350},
	{"receipts/2026-10-03-hotel.txt", "Harbour Hotel", "2026-10-03", "lodging", 18900},
	{"receipts/2026-10-03-dinner.txt", "Trattoria Roma", "2026-10-03", "meals", 6420},
	{"receipts/2026-10-04-train.txt", "Rail Express", "2026-10-04", "travel", 7800},
}

var demoCSV = []demoReceipt{
	{"receipts/card-statement.csv", "Coffee Corner", "2026-10-03", "meals", 480},
	{"receipts/card-statement.csv", "Office Supplies Co", "2026-10-04", "supplies", 1999},
}

func cmdDemo(st *State, args []string) error {
	if len(args) > 0 {
		return usagef("usage: keepup demo")
	}
	dir, err := os.MkdirTemp("", "keepup-demo-")
	if err != nil {
		return err
	}
	folder := filepath.Join(dir, "expenses")
	scriptPath := filepath.Join(dir, "demo-script.json")
	if err := writeDemoFolder(folder); err != nil {
		return err
	}
	data, err := json.MarshalIndent(demoScript(), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(scriptPath, data, 0o600); err != nil {
		return err
	}
	w := st.Stdout
	fmt.Fprintf(w, "keepup demo: a sample folder of receipts is at %s\n", folder)
	fmt.Fprintln(w, "The model is SCRIPTED (no AI is called): it plays fixed turns from", scriptPath)
	fmt.Fprintln(w, "Everything else is real: folder grants, the sandbox its commands run in, policy, approvals")
	fmt.Fprintln(w, "(non-interactive: deny), journal and audit.")
	fmt.Fprintln(w)

	t, err := runTask(st, runOptions{
		prompt:    "Make an expense report for my October trip from the receipts in this folder, and tidy up old drafts.",
		grants:    []string{folder},
		model:     "script:" + scriptPath,
		approvals: "deny",
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	report := filepath.Join(t.Outputs, "expense-report.md")
	if _, err := os.Stat(report); err == nil {
		fmt.Fprintf(w, "The expense report is at %s\n", report)
	}
	if _, err := os.Stat(filepath.Join(folder, "old-draft.txt")); err == nil {
		fmt.Fprintln(w, "The deletion of old-draft.txt was refused (approvals: deny), and the file is still there.")
	}
	db, err := openStore(st)
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := verifyAudit(context.Background(), db)
	if err != nil {
		return &exitError{code: ExitFailed, msg: "audit: " + err.Error()}
	}
	fmt.Fprintf(w, "Audit chain verified: %d entries (keepup audit verify; keepup audit export --task %s)\n", rep.Entries, t.ID)
	fmt.Fprintf(w, "See the task again with: keepup task show %s\n", t.ID)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "To use a real model:")
	fmt.Fprintln(w, "  export ANTHROPIC_API_KEY=...   # or --model openai:MODEL / ollama:MODEL")
	fmt.Fprintln(w, "  keepup run --grant ~/Documents/receipts \"Make an expense report from these receipts\"")
	fmt.Fprintln(w, "To queue tasks and leave them running: keepup serve, then keepup queue add ... (see the README)")
	return exitFor(t)
}

func writeDemoFolder(folder string) error {
	files := map[string]string{
		"notes.txt":     "Trip to the Lisbon office, 2-4 October 2026.\nClaim everything except personal items. Reports go to finance by the 10th.\n",
		"old-draft.txt": "DRAFT expense report (outdated, September numbers)\n",
	}
	for _, r := range demoReceipts {
		files[r.file] = fmt.Sprintf("RECEIPT\nVendor: %s\nDate: %s\nCategory: %s\nTotal: EUR %s\n", r.vendor, r.date, r.category, euros(r.cents))
	}
	var csv strings.Builder
	csv.WriteString("date,vendor,category,amount_eur\n")
	for _, r := range demoCSV {
		fmt.Fprintf(&csv, "%s,%s,%s,%s\n", r.date, r.vendor, r.category, euros(r.cents))
	}
	files["receipts/card-statement.csv"] = csv.String()
	for name, content := range files {
		p := filepath.Join(folder, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func demoTotal() int {
	n := 0
	for _, r := range append(append([]demoReceipt(nil), demoReceipts...), demoCSV...) {
		n += r.cents
	}
	return n
}

func euros(cents int) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }

// demoReport is the report the scripted model writes: computed here, since a script cannot
// read what tools return.
func demoReport() string {
	all := append(append([]demoReceipt(nil), demoReceipts...), demoCSV...)
	sort.Slice(all, func(i, j int) bool {
		return all[i].date < all[j].date || all[i].date == all[j].date && all[i].vendor < all[j].vendor
	})
	var sb strings.Builder
	sb.WriteString("# Expense report: Lisbon trip, 2-4 October 2026\n\n| Date | Vendor | Category | EUR |\n|---|---|---|---:|\n")
	byCat := map[string]int{}
	total := 0
	for _, r := range all {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", r.date, r.vendor, r.category, euros(r.cents))
		byCat[r.category] += r.cents
		total += r.cents
	}
	sb.WriteString("\n## By category\n\n")
	cats := make([]string, 0, len(byCat))
	for c := range byCat {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		fmt.Fprintf(&sb, "- %s: EUR %s\n", c, euros(byCat[c]))
	}
	fmt.Fprintf(&sb, "\n**Total: EUR %s**\n", euros(total))
	return sb.String()
}

func demoScript() map[string]any {
	plan := func(statuses ...task.ItemStatus) map[string]any {
		titles := []string{"Read the receipts and notes", "Write the expense report to outputs", "Remove the outdated draft", "Summarise"}
		items := make([]task.PlanItem, len(titles))
		for i, t := range titles {
			items[i] = task.PlanItem{ID: fmt.Sprint(i + 1), Title: t, Status: statuses[i]}
		}
		return map[string]any{"name": "update_plan", "input": map[string]any{"items": items}}
	}
	call := func(name string, input map[string]any) map[string]any {
		return map[string]any{"name": name, "input": input}
	}
	reads := []any{call("list_dir", map[string]any{"path": "receipts"}), call("read_file", map[string]any{"path": "notes.txt"})}
	for _, r := range demoReceipts {
		reads = append(reads, call("read_file", map[string]any{"path": r.file}))
	}
	reads = append(reads, call("read_file", map[string]any{"path": "receipts/card-statement.csv"}),
		call("bash", map[string]any{"command": "wc -l receipts/*"})) // runs in the session's sandbox
	P, I, D, S := task.Pending, task.InProgress, task.Done, task.Skipped
	return map[string]any{"turns": []any{
		map[string]any{"text": "I'll plan the work first.", "tool_calls": []any{plan(I, P, P, P)}},
		map[string]any{"text": "Reading the receipts and the notes.", "tool_calls": reads},
		map[string]any{"text": "Writing the report.", "tool_calls": []any{
			plan(D, I, P, P),
			call("write_file", map[string]any{"path": "/sessions/${session}/mnt/outputs/expense-report.md", "content": demoReport()}),
		}},
		map[string]any{"text": "Removing the outdated draft.", "tool_calls": []any{
			plan(D, D, I, P),
			call("delete_path", map[string]any{"path": "old-draft.txt"}),
		}},
		map[string]any{"tool_calls": []any{plan(D, D, S, D)}},
		map[string]any{"text": "I read 4 receipts, a card statement and your notes, and wrote expense-report.md to the outputs folder " +
			"(total EUR " + euros(demoTotal()) + " over travel, lodging, meals and supplies). Deleting old-draft.txt was refused, so it is still in the folder; delete it yourself if it is no longer needed."},
	}}
}
