package none

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/sandbox"
)

func TestRunsInTheMappedFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := Backend{}.Start(context.Background(), sandbox.Spec{
		Mounts:  []sandbox.Mount{{Host: dir, Dest: "/sessions/x/mnt/work", RW: true}},
		Workdir: "/sessions/x/mnt/work",
	})
	defer s.Close()
	var out bytes.Buffer
	res, err := s.Run(context.Background(), sandbox.Command{Args: []string{"sh", "-c", "pwd; exit 3"}, Stdout: &out})
	if err != nil || res.ExitCode != 3 || strings.TrimSpace(out.String()) != dir {
		t.Fatalf("res %+v err %v out %q", res, err, out.String())
	}
	res, _ = s.Run(context.Background(), sandbox.Command{Args: []string{"sleep", "10"}, Timeout: 50 * time.Millisecond})
	if !res.TimedOut {
		t.Errorf("timeout not reported: %+v", res)
	}
	if _, err := s.Run(context.Background(), sandbox.Command{Args: []string{"true"}, Dir: "/etc"}); err == nil {
		t.Error("a working directory outside the mounts was accepted")
	}
}
