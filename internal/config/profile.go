package config

import (
	"fmt"
	"path/filepath"
)

// ReadsConfigFromGrants is false, and is a promise: keepup reads configuration only from
// KEEPUP_HOME/config.json and the managed policy file (see Sources). It never consults a
// granted folder, an upload, the working directory or anything a task touches: a
// config.json, .keepup/, .claude/, .mcp.json, AGENTS.md or CLAUDE.md inside a grant configures
// nothing (DESIGN.md: "Nothing from a granted folder ... executes or configures keepup").
// Load takes no grants, so it cannot break the promise by accident.
const ReadsConfigFromGrants = false

// Sources returns every file keepup may read configuration from, and no other: the user
// configuration in KEEPUP_HOME and the managed policy. Neither is ever inside a grant unless a
// person put KEEPUP_HOME there.
func Sources(env func(string) string) ([]string, error) {
	home, err := Home(env)
	if err != nil {
		return nil, err
	}
	managed, _ := ManagedPath(env)
	return []string{filepath.Join(home, ConfigFile), managed}, nil
}

// ValidateProfile checks the configuration against its profile on the platform goos
// (runtime.GOOS). The cowork profile (the default; "dev" is reserved and relaxes nothing yet)
// keeps no memory across sessions, loads no project instruction files, and runs only where a
// strong isolation backend is available — Linux for now, or, with "parity": true, macOS only,
// like the Cowork preview. Each refusal is one line saying what to change.
func ValidateProfile(cfg *Config, goos string) error {
	if cfg == nil {
		cfg = &Config{}
	}
	file := cfg.Source
	if file == "" {
		file = "the configuration"
	}
	profile := cfg.Profile
	if profile == "" {
		profile = ProfileCowork
	}
	if profile != ProfileCowork && profile != ProfileDev {
		return fmt.Errorf("%s: profile: unknown profile %q (want %q or %q)", file, profile, ProfileCowork, ProfileDev)
	}
	if cfg.Memory {
		return fmt.Errorf("the cowork profile keeps no memory across sessions; remove \"memory\" from %s", file)
	}
	if cfg.ProjectInstructions {
		return fmt.Errorf("the cowork profile never loads project instruction files such as AGENTS.md or CLAUDE.md, and files in a granted folder never configure keepup; remove \"project_instructions\" from %s", file)
	}
	if cfg.Parity {
		if goos != "darwin" {
			return fmt.Errorf("\"parity\": true restricts the cowork profile to macOS, like the Cowork preview, and this is %s; remove \"parity\" from %s to run here", goos, file)
		}
		return nil
	}
	if goos != "linux" {
		return fmt.Errorf("the cowork profile runs only where a strong isolation backend is available, which is Linux for now; this is %s", goos)
	}
	return nil
}
