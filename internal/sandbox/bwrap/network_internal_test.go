package bwrap

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepup/keepup/internal/sandbox"
)

// TestCABundleOffTheSystemPath: where the system's bundle is not shown at its own path in the
// sandbox (here: a bundle outside /etc), CABundle is a plain file of its own, holding that
// bundle and the session CA. (Where it is shown, CABundle links to it: TestEgressBridge.)
func TestCABundleOffTheSystemPath(t *testing.T) {
	t.Parallel()
	system, ca := testCA(t), testCA(t)
	path := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(path, system, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Exe: os.Args[0], StateDir: t.TempDir()})
	if err != nil {
		t.Skip(err)
	}
	b.systemBundles = []string{path}
	spec := sandbox.Spec{SessionID: "ca-off-system",
		Mounts:  []sandbox.Mount{{Host: t.TempDir(), Dest: "/sessions/ca-off-system/mnt/w", RW: true}},
		Network: sandbox.Network{Serve: func(net.Listener) error { return nil }, ProxyToken: "token", ProxyCA: ca}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	r, err := s.Run(ctx, sandbox.Command{Args: []string{"sh", "-c", "test -f " + CABundle + " && test ! -L " + CABundle + " && cat " + CABundle},
		Stdout: &out, Stderr: &errb})
	if err != nil || r.ExitCode != 0 {
		t.Fatalf("exit %d, %v: %s", r.ExitCode, err, errb.String())
	}
	if want := strings.TrimRight(string(system), "\n") + "\n" + string(ca); out.String() != want {
		t.Errorf("%s inside:\n%s\nwant the system bundle, then the session CA", CABundle, out.String())
	}
}
