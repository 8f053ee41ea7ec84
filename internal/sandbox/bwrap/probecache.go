package bwrap

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// probeFile, in Config.StateDir, records that a bwrap passed New's checks (its features, and
// that it could create a user namespace), so that the next New with the same bwrap on the same
// boot need not run bwrap three times to find out again.
const probeFile = "probe.json"

// probeRecord is what probeFile holds.
type probeRecord struct {
	Key           probeKey `json:"key"`
	Version       string   `json:"version"`
	DisableUserns bool     `json:"disable_userns"`
	BindFD        bool     `json:"bind_fd"`
	Size          bool     `json:"size"`
	Perms         bool     `json:"perms"`
	GuardStage    bool     `json:"guard_stage"`
}

// probeKey is what a cached probe is valid for: this bwrap file unchanged, this boot, this
// user, and the same user namespace sysctls. Whatever else changes (an AppArmor profile) makes
// Start fail with the same explanation New would have given.
type probeKey struct {
	Bwrap   string            `json:"bwrap"`
	Dev     uint64            `json:"dev"`
	Ino     uint64            `json:"ino"`
	Size    int64             `json:"size"`
	Mtime   int64             `json:"mtime"`
	Ctime   int64             `json:"ctime"`
	BootID  string            `json:"boot_id"`
	UID     int               `json:"uid"`
	Sysctls map[string]string `json:"sysctls"`
	// Exe is the keepup executable the guard stage runs (its path, device, inode and
	// modification time): a security module may let one program make namespaces and not another.
	Exe string `json:"exe"`
}

// userNSSysctls decide whether an unprivileged user namespace can be made.
var userNSSysctls = []string{
	"/proc/sys/user/max_user_namespaces",
	"/proc/sys/kernel/unprivileged_userns_clone",
	"/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
}

// currentProbeKey describes bwrap at path and keepup at exe now; ok is false when it cannot be
// told.
func currentProbeKey(path, exe string) (probeKey, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return probeKey{}, false
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return probeKey{}, false
	}
	k := probeKey{Bwrap: path, Dev: st.Dev, Ino: st.Ino, Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), BootID: strings.TrimSpace(string(boot)),
		UID: os.Getuid(), Sysctls: map[string]string{}}
	for _, p := range userNSSysctls {
		if b, err := os.ReadFile(p); err == nil {
			k.Sysctls[p] = strings.TrimSpace(string(b))
		}
	}
	var xt syscall.Stat_t
	if err := syscall.Stat(exe, &xt); err != nil {
		return probeKey{}, false
	}
	k.Exe = fmt.Sprintf("%s %d %d %d", exe, xt.Dev, xt.Ino, xt.Mtim.Nano())
	return k, true
}

func (k probeKey) equal(o probeKey) bool {
	a, _ := json.Marshal(k)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// loadProbe returns the features of a bwrap that passed New's checks with key, if recorded in
// dir (a folder of this user's).
func loadProbe(dir string, key probeKey) (features, bool) {
	b, err := os.ReadFile(filepath.Join(dir, probeFile))
	if err != nil {
		return features{}, false
	}
	var r probeRecord
	if json.Unmarshal(b, &r) != nil || !r.Key.equal(key) {
		return features{}, false
	}
	return features{version: r.Version, disableUserns: r.DisableUserns, bindFD: r.BindFD, size: r.Size, perms: r.Perms, guardStage: r.GuardStage}, true
}

// saveProbe records that bwrap with key and features f passed New's checks. Best effort.
func saveProbe(dir string, key probeKey, f features) {
	b, err := json.Marshal(probeRecord{Key: key, Version: f.version, DisableUserns: f.disableUserns, BindFD: f.bindFD, Size: f.size, Perms: f.perms, GuardStage: f.guardStage})
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(dir, probeFile+".*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr != nil || cerr != nil || os.Rename(tmp.Name(), filepath.Join(dir, probeFile)) != nil {
		os.Remove(tmp.Name())
	}
}
