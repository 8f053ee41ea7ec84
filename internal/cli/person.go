package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/keepup/keepup/internal/agent"
)

// terminalPerson asks approvals and questions on the terminal (stderr), reading answers from
// stdin. End of input answers "no".
type terminalPerson struct {
	mu  sync.Mutex
	in  *bufio.Reader
	out io.Writer
	// headless: nobody can answer (approvals deny): questions fail at once.
	headless bool
}

func (p *terminalPerson) Approve(ctx context.Context, req agent.ApprovalRequest) (agent.Answer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "\nkeepup wants to: %s\n", req.Summary)
	fmt.Fprintf(p.out, "  tool %s, effect %s, because of %s\n", req.Tool, req.Effect, req.Rule)
	for _, t := range req.Targets {
		fmt.Fprintf(p.out, "  path %s\n", t.Virtual)
	}
	if req.Guard != "" {
		fmt.Fprintf(p.out, "  %s\n", strings.ReplaceAll(req.Guard, "\n", "\n  "))
	}
	if src := req.Provenance.UntrustedSources(); len(src) > 0 {
		fmt.Fprintf(p.out, "  this action follows content from files: %s\n", strings.Join(src, ", "))
	} else {
		fmt.Fprintf(p.out, "  this action follows your request only\n")
	}
	for {
		fmt.Fprint(p.out, "Allow? [y]es / [n]o / [t] yes for this task: ")
		line, err := p.readLine(ctx)
		if err != nil {
			fmt.Fprintln(p.out, "(no answer: refused)")
			return agent.AnswerNo, nil
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return agent.AnswerYes, nil
		case "n", "no", "":
			return agent.AnswerNo, nil
		case "t", "task", "yes-for-this-task", "yes-task":
			return agent.AnswerYesTask, nil
		}
	}
}

func (p *terminalPerson) Answer(ctx context.Context, q string) (string, error) {
	if p.headless {
		return "", errors.New("nobody can answer: the task runs non-interactively (--approvals deny); decide yourself and say so in the summary")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "\nkeepup asks: %s\n> ", q)
	line, err := p.readLine(ctx)
	if err != nil {
		return "", errors.New("no answer (input closed); decide yourself and say so in the summary")
	}
	return strings.TrimSpace(line), nil
}

// readLine reads one line, giving up when ctx ends.
func (p *terminalPerson) readLine(ctx context.Context) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := p.in.ReadString('\n')
		if err == io.EOF && s != "" {
			err = nil
		}
		ch <- res{s, err}
	}()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case r := <-ch:
		return r.s, r.err
	}
}
