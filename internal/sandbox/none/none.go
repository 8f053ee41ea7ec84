// Package none is the development "backend" selected by `--sandbox none`: it runs commands
// directly on the host, unconfined, mapping the session's mount paths to host folders. It
// exists only for developing keepup where no sandbox can start; the Cowork profile and the
// managed policy refuse it, and the CLI warns on every run. It must never be chosen
// implicitly, as a fallback for a backend that failed.
package none

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keepup/keepup/internal/sandbox"
)

// Backend runs commands unconfined.
type Backend struct{}

func (Backend) Name() string { return "none" }

// Start returns a session that maps Spec.Mounts' Dest paths to their Host folders for the
// working directory. Nothing else is isolated.
func (Backend) Start(ctx context.Context, spec sandbox.Spec) (sandbox.Session, error) {
	return &session{spec: spec}, nil
}

type session struct {
	spec   sandbox.Spec
	mu     sync.Mutex
	closed bool
}

// hostDir maps a path inside the session to its host folder.
func (s *session) hostDir(dir string) (string, error) {
	if dir == "" {
		dir = s.spec.Workdir
	}
	dir = path.Clean(dir)
	for _, m := range s.spec.Mounts {
		if dir == m.Dest || strings.HasPrefix(dir, m.Dest+"/") {
			return m.Host + strings.TrimPrefix(dir, m.Dest), nil
		}
	}
	return "", fmt.Errorf("working directory %s is not in the session's folders", dir)
}

func (s *session) Run(ctx context.Context, c sandbox.Command) (sandbox.Result, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return sandbox.Result{}, errors.New("sandbox session is closed")
	}
	s.mu.Unlock()
	if len(c.Args) == 0 {
		return sandbox.Result{}, errors.New("no command")
	}
	dir, err := s.hostDir(c.Dir)
	if err != nil {
		return sandbox.Result{}, err
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, c.Args[0], c.Args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), c.Env...)
	for k, v := range s.spec.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	err = cmd.Run()
	res := sandbox.Result{Duration: time.Since(start), TimedOut: c.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal().String()
			res.ExitCode = 128 + int(ws.Signal())
		} else {
			res.ExitCode = ee.ExitCode()
		}
	default:
		return res, err
	}
	return res, nil
}

func (s *session) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}
