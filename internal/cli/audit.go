package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/keepup/keepup/internal/audit"
)

func cmdAuditVerify(st *State, args []string) error {
	if len(args) > 0 {
		return usagef("usage: keepup audit verify")
	}
	db, err := openStore(st)
	if err != nil {
		return err
	}
	defer db.Close()
	rep, err := verifyAudit(context.Background(), db)
	if err != nil {
		var be *audit.BrokenError
		if errors.As(err, &be) {
			return &exitError{code: ExitFailed, msg: err.Error()}
		}
		return err
	}
	fmt.Fprintf(st.Stdout, "audit chain ok: %d entries, head %s\n", rep.Entries, rep.Head.Hash)
	return nil
}

type auditSource interface {
	ScanAudit(ctx context.Context, after int64, fn func(audit.Record) error) error
	AuditAnchor(ctx context.Context) (audit.Anchor, error)
}

func verifyAudit(ctx context.Context, db auditSource) (audit.Report, error) {
	anchor, err := db.AuditAnchor(ctx)
	if err != nil {
		return audit.Report{}, err
	}
	return audit.Verify(ctx, db.ScanAudit, anchor)
}

func cmdAuditExport(st *State, args []string) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	taskID := fs.String("task", "", "only this task's entries")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return usagef("usage: keepup audit export [--task ID]")
	}
	db, err := openStore(st)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	w := bufio.NewWriter(st.Stdout)
	if *taskID == "" {
		err = audit.Export(w, audit.Scan(ctx, db.ScanAudit, 0))
	} else {
		if _, terr := db.Task(ctx, *taskID); terr != nil {
			return usagef("task %q: no such task (see 'keepup tasks')", *taskID)
		}
		var recs []audit.Record
		if recs, err = db.AuditRecords(ctx, *taskID); err == nil {
			err = audit.Export(w, audit.Records(recs))
		}
	}
	if err != nil {
		return err
	}
	return w.Flush()
}
