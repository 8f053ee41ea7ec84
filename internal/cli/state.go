// Package cli owns keepup's command-line interface: one file per command, all of them running
// in-process against a State (streams, environment, signals) so that every command can be tested
// without a subprocess. It must never hold policy or tool logic of its own: it parses, wires the
// runtime together and prints.
package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// State is what a command may touch of the process: streams, environment and signals.
type State struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// Interactive reports whether stdin and stderr are a terminal a person can answer at.
	Interactive bool
	// Color/redraw allowed on Stdout.
	TTY bool
	// Context returns a context cancelled on SIGINT/SIGTERM.
	Context func() (context.Context, context.CancelFunc)
	// Executable is keepup's own binary, for commands that re-run it.
	Executable string
}

// NewState returns the State of the real process.
func NewState() *State {
	exe, _ := os.Executable()
	return &State{
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		Getenv:      os.Getenv,
		Interactive: term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd())),
		TTY:         term.IsTerminal(int(os.Stdout.Fd())),
		Context: func() (context.Context, context.CancelFunc) {
			return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		},
		Executable: exe,
	}
}
