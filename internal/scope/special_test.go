//go:build linux

package scope

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// noHang runs f and fails the test if it has not returned after a few seconds (a blocked open
// on a FIFO would hang forever). It returns f's error for the caller to check.
func noHang(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5s", what)
		return nil
	}
}

func TestFIFORefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := syscall.Mkfifo(filepath.Join(b.a, "pipe"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	p := mustResolve(t, b.s, "pipe")
	err := noHang(t, "ReadFile", func() error { _, _, _, err := p.ReadFile(0, 0, 0); return err })
	assertRefused(t, err, "is a named pipe (FIFO); only regular files can be read")
	err = noHang(t, "WriteAtomic", func() error { _, _, _, err := p.WriteAtomic([]byte("x"), 0o644); return err })
	assertRefused(t, err, "is a named pipe (FIFO); only regular files are written")
	err = noHang(t, "Open", func() error { _, _, err := p.Open(); return err })
	assertRefused(t, err, "FIFO")
	err = noHang(t, "ReadDir", func() error { _, err := p.ReadDir(); return err })
	assertRefused(t, err, "not a directory")
	var d string
	var ok bool
	err = noHang(t, "Digest", func() (err error) { d, ok, err = p.Digest(); return err })
	if d != "" || !ok || err != nil {
		t.Errorf("Digest = %q, %v, %v", d, ok, err)
	}

	// A FIFO swapped in where a regular file was checked: the non-blocking open and the fstat
	// on the descriptor still refuse it.
	host := filepath.Join(b.a, "f.txt")
	mustWrite(t, host, "x")
	q := mustResolve(t, b.s, "f.txt")
	if fi, err := q.Stat(); err != nil || !fi.Mode().IsRegular() {
		t.Fatal(err)
	}
	os.Remove(host)
	if err := syscall.Mkfifo(host, 0o644); err != nil {
		t.Fatal(err)
	}
	err = noHang(t, "ReadFile after swap", func() error { _, _, _, err := q.ReadFile(0, 0, 0); return err })
	assertRefused(t, err, "FIFO")
}

func TestDeviceRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dev := filepath.Join(b.a, "null")
	err := syscall.Mknod(dev, syscall.S_IFCHR|0o666, int(1<<8|3)) // char 1:3, like /dev/null
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("mknod: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	p := mustResolve(t, b.s, "null")
	err = noHang(t, "ReadFile", func() error { _, _, _, err := p.ReadFile(0, 0, 0); return err })
	assertRefused(t, err, "is a device; only regular files can be read")
	err = noHang(t, "WriteAtomic", func() error { _, _, _, err := p.WriteAtomic([]byte("x"), 0o644); return err })
	assertRefused(t, err, "is a device; only regular files are written")
	err = noHang(t, "Move", func() error {
		return Move(p, mustResolve(t, b.s, "/sessions/brave-loving-maxwell/mnt/outputs/null"), false)
	})
	assertRefused(t, err, "is a device")
	err = noHang(t, "Move onto", func() error {
		return Move(mustResolve(t, b.s, "notes.txt"), p, true)
	})
	assertRefused(t, err, "is a device; only regular files are replaced")
	fi, err := os.Lstat(dev)
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("device node changed: %v %v", fi, err)
	}
}

// Swaps between the type check and the open: what is opened is checked again on the descriptor,
// and the open neither blocks nor follows a link out. Not parallel: it sets a package hook.
func TestSwapBetweenCheckAndOpen(t *testing.T) {
	b := setup(t)
	host := filepath.Join(b.a, "f.txt")
	swapTo := func(make func() error) {
		testHookBeforeOpen = func(Path) {
			os.Remove(host)
			if err := make(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { testHookBeforeOpen = nil })
	p := mustResolve(t, b.s, "f.txt")

	for _, tc := range []struct {
		name string
		make func() error
		want string
	}{
		{"fifo", func() error { return syscall.Mkfifo(host, 0o644) }, "FIFO"},
		{"link out", func() error { return os.Symlink(b.secret, host) }, ""},
		{"relative link out", func() error { return os.Symlink("../outside/secret.txt", host) }, "leads outside"},
		{"hard link", func() error { return os.Link(b.secret, host) }, "hard links"},
	} {
		mustWrite(t, host, "mine")
		swapTo(tc.make)
		err := noHang(t, tc.name+": WriteAtomic", func() error { _, _, _, err := p.WriteAtomic([]byte("pwned"), 0o644); return err })
		assertRefused(t, err, tc.want)
		b.assertOutsideIntact(t)

		os.Remove(host)
		mustWrite(t, host, "mine")
		var data []byte
		err = noHang(t, tc.name+": ReadFile", func() (err error) { data, _, _, err = p.ReadFile(0, 0, 0); return err })
		if tc.name == "hard link" {
			// A hard link is the same file inside the grant; reading it is not an escape.
			testHookBeforeOpen = nil
			continue
		}
		assertRefused(t, err, tc.want)
		if len(data) > 0 {
			t.Errorf("%s: read %q", tc.name, data)
		}
		testHookBeforeOpen = nil
		os.Remove(host)
	}
}
