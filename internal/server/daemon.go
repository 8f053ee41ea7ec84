package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DaemonInfoFile is the file in KEEPUP_HOME that tells the CLI where the daemon listens.
const DaemonInfoFile = "daemon.json"

// Info is the content of KEEPUP_HOME/daemon.json, written by a running daemon.
type Info struct {
	PID     int       `json:"pid"`
	Addr    string    `json:"addr"`             // TCP host:port
	Socket  string    `json:"socket,omitempty"` // Unix socket path
	Token   string    `json:"token"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
}

// NewToken returns a fresh bearer token: 32 random bytes in hex.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// WriteDaemonInfo writes home/daemon.json with mode 0600, atomically: a reader sees the old
// file or the new one, never a part.
func WriteDaemonInfo(home string, info Info) error {
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(home, "."+DaemonInfoFile+".*") // mode 0600
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(home, DaemonInfoFile), err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", filepath.Join(home, DaemonInfoFile), err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(home, DaemonInfoFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", filepath.Join(home, DaemonInfoFile), err)
	}
	return nil
}

// ReadDaemonInfo reads home/daemon.json. A missing file is an error wrapping fs.ErrNotExist.
// The file says where a daemon was started; whether it still runs is for the caller to check.
func ReadDaemonInfo(home string) (*Info, error) {
	path := filepath.Join(home, DaemonInfoFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if info.Token == "" || info.Addr == "" && info.Socket == "" {
		return nil, fmt.Errorf("%s: no token or no address", path)
	}
	return &info, nil
}

// RemoveDaemonInfo removes home/daemon.json if this process wrote it, so that a daemon that
// stops never removes the file of a daemon started after it. A missing file is not an error.
func RemoveDaemonInfo(home string) error {
	info, err := ReadDaemonInfo(home)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil && info.PID != os.Getpid() {
		return nil
	}
	// Ours, or unreadable (nobody can use it).
	if err := os.Remove(filepath.Join(home, DaemonInfoFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
