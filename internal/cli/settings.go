package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/keepup/keepup/internal/config"
	"github.com/keepup/keepup/internal/policy"
)

// settings is keepup's configuration as read at start: KEEPUP_HOME, the user's config and the
// managed policy, checked against the Cowork profile.
type settings struct {
	loaded            *config.Loaded
	home              string
	policy            *policy.Policy
	defaultMode       string
	contextWindows    map[string]int
	auditModelContent bool
}

// loadSettings reads and checks the configuration and makes sure KEEPUP_HOME is usable. Every
// failure is a usage error naming the file and the field.
func loadSettings(st *State) (*settings, error) {
	home, err := config.Home(st.Getenv)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if err := checkHomeWritable(home); err != nil {
		return nil, err
	}
	ld, err := config.Load(st.Getenv)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if err := config.ValidateProfile(ld.User, runtime.GOOS); err != nil {
		return nil, usagef("%v", err)
	}
	var managed *policy.Rules
	if ld.Managed != nil {
		managed = ld.Managed.Rules
	}
	set := &settings{
		loaded:            ld,
		home:              ld.Home,
		policy:            policy.New(managed, ld.User.Rules),
		defaultMode:       string(ld.User.Approvals),
		contextWindows:    map[string]int{},
		auditModelContent: ld.User.Audit.ModelContent,
	}
	if set.defaultMode == "" {
		set.defaultMode = string(policy.ModeAsk)
	}
	for spec, m := range ld.User.Models {
		set.contextWindows[spec] = m.ContextWindow
	}
	return set, nil
}

// checkHomeWritable tells, without creating anything, whether KEEPUP_HOME exists as a writable
// directory or could be created: its nearest existing ancestor must be a writable directory.
func checkHomeWritable(home string) error {
	fail := func(err error) error { return usagef("KEEPUP_HOME %s is not writable: %v", home, err) }
	p := home
	for {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fail(fmt.Errorf("%s is not a directory", p))
			}
			if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
				return fail(fmt.Errorf("%s: %v", p, err))
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fail(err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return fail(err)
		}
		p = parent
	}
}

// ensureHome creates KEEPUP_HOME and checks that it is writable.
func ensureHome(home string) error {
	if err := config.EnsureHome(home); err != nil {
		return usagef("%v", err)
	}
	return nil
}
