package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepup/keepup/internal/store"
	"github.com/keepup/keepup/internal/store/sqlite"
	"github.com/keepup/keepup/internal/task"
)

// openStore opens the database of KEEPUP_HOME for commands that read it.
func openStore(st *State) (*sqlite.DB, error) {
	set, err := loadSettings(st)
	if err != nil {
		return nil, err
	}
	if err := ensureHome(set.home); err != nil {
		return nil, err
	}
	path := filepath.Join(set.home, "keepup.db")
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		return nil, usagef("database %s: %v", path, err)
	}
	return db, nil
}

func cmdTasks(st *State, args []string) error {
	fs := flag.NewFlagSet("tasks", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	limit := fs.Int("n", 50, "how many tasks")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return usagef("usage: keepup tasks [-n N]")
	}
	db, err := openStore(st)
	if err != nil {
		return err
	}
	defer db.Close()
	ts, err := db.Tasks(context.Background(), store.TaskFilter{Limit: *limit})
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		fmt.Fprintln(st.Stdout, "no tasks yet; try 'keepup demo'")
		return nil
	}
	return printTasks(st.Stdout, ts, false)
}

// printTasks prints tasks as a table, with their queue priority when prio is set.
func printTasks(w io.Writer, ts []task.Task, prio bool) error {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	head := "ID\tSTATUS\tCREATED\tPLAN\tPROMPT"
	if prio {
		head = "ID\tSTATUS\tPRIO\tCREATED\tPLAN\tPROMPT"
	}
	fmt.Fprintln(tw, head)
	for _, t := range ts {
		done, total := t.Plan.Counts()
		p := ""
		if prio {
			p = fmt.Sprintf("%d\t", t.Priority)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t%d/%d\t%s\n", t.ID, t.Status, p, t.CreatedAt.Local().Format(time.DateTime), done, total, short(t.Prompt, 60))
	}
	return tw.Flush()
}

func cmdTaskShow(st *State, args []string) error {
	fs := flag.NewFlagSet("task show", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	events := fs.Bool("events", false, "also print the task's events")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return usagef("usage: keepup task show [--events] ID")
	}
	id := fs.Arg(0)
	db, err := openStore(st)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	t, err := db.Task(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return usagef("task %q: no such task (see 'keepup tasks')", id)
	}
	if err != nil {
		return err
	}
	w := st.Stdout
	fmt.Fprintf(w, "Task      %s\n", t.ID)
	fmt.Fprintf(w, "Status    %s\n", t.Status)
	fmt.Fprintf(w, "Session   %s\n", t.Session)
	fmt.Fprintf(w, "Model     %s (approvals %s)\n", t.Model, t.Approvals)
	fmt.Fprintf(w, "Created   %s\n", t.CreatedAt.Local().Format(time.DateTime))
	fmt.Fprintf(w, "Turns     %d, tokens %d in / %d out\n", t.Turns, t.Usage.InputTokens, t.Usage.OutputTokens)
	for _, g := range t.Grants {
		fmt.Fprintf(w, "Folder    %s %s %s\n", g.Name, g.Mode, g.Path)
	}
	fmt.Fprintf(w, "Prompt    %s\n", t.Prompt)
	if len(t.Plan) > 0 {
		fmt.Fprintln(w, "Plan")
		for _, it := range t.Plan {
			fmt.Fprintf(w, "  %s %s\n", checkbox(it.Status), it.Title)
		}
	}
	if t.Error != "" {
		fmt.Fprintf(w, "Error     %s\n", t.Error)
	}
	if t.Summary != "" {
		fmt.Fprintf(w, "Summary\n  %s\n", strings.ReplaceAll(strings.TrimSpace(t.Summary), "\n", "\n  "))
	}
	calls, err := db.ToolCalls(ctx, id)
	if err != nil {
		return err
	}
	if len(calls) > 0 {
		fmt.Fprintln(w, "Tool calls")
		for _, c := range calls {
			fmt.Fprintf(w, "  %-8s %-12s %-9s %s\n", c.Status, c.Tool, c.Effect, short(c.Input, 70))
		}
	}
	if *events {
		evs, err := db.Events(ctx, id, 0, 0)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, "Events")
		for _, e := range evs {
			fmt.Fprintf(w, "  %4d %s %-18s %s\n", e.Seq, e.Time.Local().Format("15:04:05.000"), e.Type, short(string(e.Data), 100))
		}
	}
	return nil
}

func checkbox(s task.ItemStatus) string {
	switch s {
	case task.Done:
		return "[x]"
	case task.InProgress:
		return "[>]"
	case task.Skipped:
		return "[-]"
	case task.ItemFailed:
		return "[!]"
	}
	return "[ ]"
}

func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
