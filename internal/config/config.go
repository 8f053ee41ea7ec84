package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keepup/keepup/internal/egress"
	"github.com/keepup/keepup/internal/policy"
)

const (
	// ConfigFile is the user configuration's name inside KEEPUP_HOME.
	ConfigFile = "config.json"
	// DefaultManagedPolicy is where the managed policy is read from when
	// KEEPUP_MANAGED_POLICY is not set.
	DefaultManagedPolicy = "/etc/keepup/managed-policy.json"
	// ProfileCowork is the default profile; ProfileDev is reserved and relaxes nothing yet.
	ProfileCowork = "cowork"
	ProfileDev    = "dev"

	maxFileSize = 1 << 20
)

// Permissions are rule lists as written (see internal/policy for the rule language).
type Permissions struct {
	Allow []string `json:"allow,omitempty"`
	Ask   []string `json:"ask,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// Model is per-model configuration, keyed by model spec.
type Model struct {
	ContextWindow int `json:"context_window,omitempty"`
}

// Audit is audit configuration.
type Audit struct {
	// ModelContent records prompts and model output in the audit, not only their hashes.
	ModelContent bool `json:"model_content"`
}

// Config is the user's configuration (KEEPUP_HOME/config.json). Every field is optional.
type Config struct {
	// Source is the file read, "" when there was none (all defaults).
	Source string `json:"-"`

	Permissions Permissions `json:"permissions"`
	// Approvals is the default approvals mode; "" when not set (ask).
	Approvals policy.Mode `json:"approvals,omitempty"`
	// Profile is "cowork" (the default) or "dev".
	Profile string `json:"profile"`
	// Parity restricts the cowork profile to macOS, like the Cowork preview.
	Parity bool             `json:"parity"`
	Models map[string]Model `json:"models,omitempty"`
	Audit  Audit            `json:"audit"`
	Egress Egress           `json:"egress"`
	// Memory and ProjectInstructions exist only to be refused by the cowork profile with a
	// clear error (see ValidateProfile).
	Memory              bool `json:"memory"`
	ProjectInstructions bool `json:"project_instructions"`

	// Rules are Permissions parsed, ready for policy.New.
	Rules *policy.Rules `json:"-"`
}

// ManagedApprovals restricts the approvals modes.
type ManagedApprovals struct {
	// AllowedModes lists the modes a task may use; nil means every mode.
	AllowedModes []policy.Mode `json:"allowed_modes,omitempty"`
}

// ManagedSandbox restricts isolation.
type ManagedSandbox struct {
	// AllowNone lets tasks run without a sandbox backend. Off by default: no sandbox, no task.
	AllowNone bool `json:"allow_none"`
}

// Egress lists network capabilities: hosts the session's egress proxy lets requests reach
// ("api.example.com", "*.example.com", optionally ":port"). Deny entries win over allow
// entries of every layer. The Cowork default is none.
type Egress struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
	// MaxConnections caps the connections a session's commands have open through the proxy
	// at once (0: egress.DefaultMaxConns); MaxBodyBytes caps a request body the proxy reads
	// (0: egress.DefaultMaxBodyBytes). The managed policy's caps bound the user's.
	MaxConnections int   `json:"max_connections,omitempty"`
	MaxBodyBytes   int64 `json:"max_body_bytes,omitempty"`
}

// Managed is the managed policy: set by an administrator, read at start, always wins.
type Managed struct {
	// Source is the file read.
	Source      string           `json:"-"`
	Permissions Permissions      `json:"permissions"`
	Approvals   ManagedApprovals `json:"approvals"`
	Sandbox     ManagedSandbox   `json:"sandbox"`
	Egress      Egress           `json:"egress"`

	// Rules are Permissions parsed, with Source and AllowedModes set, ready for policy.New.
	Rules *policy.Rules `json:"-"`
}

// Loaded is everything read at start.
type Loaded struct {
	Home string
	// User is never nil: defaults when config.json does not exist.
	User *Config
	// Managed is nil when there is no managed policy.
	Managed *Managed
}

// Load resolves KEEPUP_HOME and reads the user configuration and the managed policy, and
// nothing else (see ReadsConfigFromGrants). It does not create KEEPUP_HOME (EnsureHome
// does). Any malformed file is an error naming the file and the field.
func Load(env func(string) string) (*Loaded, error) {
	home, err := Home(env)
	if err != nil {
		return nil, err
	}
	user, err := LoadUser(filepath.Join(home, ConfigFile))
	if err != nil {
		return nil, err
	}
	path, explicit := ManagedPath(env)
	managed, err := LoadManaged(path, explicit)
	if err != nil {
		return nil, err
	}
	return &Loaded{Home: home, User: user, Managed: managed}, nil
}

// ManagedPath returns the managed policy's path and whether KEEPUP_MANAGED_POLICY set it.
func ManagedPath(env func(string) string) (path string, explicit bool) {
	if p := env("KEEPUP_MANAGED_POLICY"); p != "" {
		return p, true
	}
	return DefaultManagedPolicy, false
}

// Policy returns the policy over the managed and user layers.
func (l *Loaded) Policy() *policy.Policy {
	var m *policy.Rules
	if l.Managed != nil {
		m = l.Managed.Rules
	}
	return policy.New(m, l.User.Rules)
}

// SandboxAllowNone reports whether the managed policy lets tasks run without a sandbox.
func (l *Loaded) SandboxAllowNone() bool { return l.Managed != nil && l.Managed.Sandbox.AllowNone }

// Mode returns the approvals mode for a task: the flag's value if given (--approvals), else
// the user configuration's "approvals", else ask — or, when the managed policy forbids ask and
// nothing was requested, the first mode it allows. Requesting a mode the managed policy
// forbids is an error naming the mode and the managed policy file.
func (l *Loaded) Mode(flag string) (policy.Mode, error) {
	p := l.Policy()
	requested, from := flag, "--approvals"
	if requested == "" && l.User.Approvals != "" {
		requested, from = string(l.User.Approvals), l.User.Source+": approvals"
	}
	if requested == "" {
		if p.CheckMode(policy.ModeAsk) == nil {
			return policy.ModeAsk, nil
		}
		return p.AllowedModes()[0], nil
	}
	m, err := policy.ParseMode(requested)
	if err != nil {
		return "", fmt.Errorf("%s: %v", from, err)
	}
	if err := p.CheckMode(m); err != nil {
		return "", fmt.Errorf("%s: %v", from, err)
	}
	return m, nil
}

// readFile reads a configuration file. A missing file is reported as fs.ErrNotExist.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// LoadUser reads the user configuration at path. A missing file gives the defaults.
func LoadUser(path string) (*Config, error) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{Profile: ProfileCowork, Rules: &policy.Rules{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	cfg, err := ParseUser(path, data)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// ParseUser decodes a user configuration strictly; file names it in errors.
func ParseUser(file string, data []byte) (*Config, error) {
	cfg := &Config{Source: file, Profile: ProfileCowork}
	if err := decodeUser(cfg, data); err != nil {
		return nil, fileError(file, data, err)
	}
	return cfg, nil
}

func decodeUser(cfg *Config, data []byte) error {
	if err := checkSyntax(data); err != nil {
		return err
	}
	top, err := object(data, "")
	if err != nil {
		return err
	}
	for _, m := range top {
		var err error
		switch m.key {
		case "permissions":
			cfg.Permissions, err = decodePermissions(m.val, m.key)
		case "approvals":
			var s string
			if s, err = decodeString(m.val, m.key); err == nil {
				var mode policy.Mode
				if mode, err = policy.ParseMode(s); err != nil {
					err = errAt(m.key, "%v", err)
				}
				cfg.Approvals = mode
			}
		case "profile":
			var s string
			if s, err = decodeString(m.val, m.key); err == nil {
				if s != ProfileCowork && s != ProfileDev {
					err = errAt(m.key, "unknown profile %q (want %q or %q)", s, ProfileCowork, ProfileDev)
				}
				cfg.Profile = s
			}
		case "parity":
			cfg.Parity, err = decodeBool(m.val, m.key)
		case "models":
			cfg.Models, err = decodeModels(m.val, m.key)
		case "audit":
			cfg.Audit, err = decodeAudit(m.val, m.key)
		case "egress":
			cfg.Egress, err = decodeEgress(m.val, m.key)
		case "memory":
			cfg.Memory, err = decodeBool(m.val, m.key)
		case "project_instructions":
			cfg.ProjectInstructions, err = decodeBool(m.val, m.key)
		default:
			err = unknownField("", m.key, "permissions", "approvals", "profile", "parity",
				"models", "audit", "egress", "memory", "project_instructions")
		}
		if err != nil {
			return err
		}
	}
	rules, err := parseRules(cfg.Permissions, "permissions")
	if err != nil {
		return err
	}
	rules.Source = cfg.Source
	cfg.Rules = rules
	return nil
}

// LoadManaged reads the managed policy at path. A missing file means no managed policy (nil)
// unless explicit (KEEPUP_MANAGED_POLICY named it), when it is an error.
func LoadManaged(path string, explicit bool) (*Managed, error) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if explicit {
			return nil, fmt.Errorf("KEEPUP_MANAGED_POLICY names %s, which does not exist", path)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the managed policy: %w", err)
	}
	return ParseManaged(path, data)
}

// ParseManaged decodes a managed policy strictly; file names it in errors.
func ParseManaged(file string, data []byte) (*Managed, error) {
	mp := &Managed{Source: file}
	if err := decodeManaged(mp, data); err != nil {
		return nil, fileError(file, data, err)
	}
	return mp, nil
}

func decodeManaged(mp *Managed, data []byte) error {
	if err := checkSyntax(data); err != nil {
		return err
	}
	top, err := object(data, "")
	if err != nil {
		return err
	}
	for _, m := range top {
		var err error
		switch m.key {
		case "permissions":
			mp.Permissions, err = decodePermissions(m.val, m.key)
		case "approvals":
			mp.Approvals, err = decodeManagedApprovals(m.val, m.key)
		case "sandbox":
			mp.Sandbox, err = decodeManagedSandbox(m.val, m.key)
		case "egress":
			mp.Egress, err = decodeEgress(m.val, m.key)
		default:
			err = unknownField("", m.key, "permissions", "approvals", "sandbox", "egress")
		}
		if err != nil {
			return err
		}
	}
	rules, err := parseRules(mp.Permissions, "permissions")
	if err != nil {
		return err
	}
	rules.Source = mp.Source
	rules.AllowedModes = mp.Approvals.AllowedModes
	mp.Rules = rules
	return nil
}

func decodePermissions(raw json.RawMessage, path string) (Permissions, error) {
	var p Permissions
	members, err := object(raw, path)
	if err != nil {
		return p, err
	}
	for _, m := range members {
		var err error
		switch m.key {
		case "allow":
			p.Allow, err = decodeStrings(m.val, join(path, m.key))
		case "ask":
			p.Ask, err = decodeStrings(m.val, join(path, m.key))
		case "deny":
			p.Deny, err = decodeStrings(m.val, join(path, m.key))
		default:
			err = unknownField(path, m.key, "allow", "ask", "deny")
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// parseRules parses permission lists, naming the list and index of a bad rule.
func parseRules(p Permissions, path string) (*policy.Rules, error) {
	rs := &policy.Rules{}
	for _, l := range []struct {
		name string
		in   []string
		out  *[]policy.Rule
	}{{"allow", p.Allow, &rs.Allow}, {"ask", p.Ask, &rs.Ask}, {"deny", p.Deny, &rs.Deny}} {
		for i, s := range l.in {
			r, err := policy.ParseRule(s)
			if err != nil {
				return nil, errAt(fmt.Sprintf("%s.%s[%d]", path, l.name, i), "%v", err)
			}
			*l.out = append(*l.out, r)
		}
	}
	return rs, nil
}

func decodeModels(raw json.RawMessage, path string) (map[string]Model, error) {
	members, err := object(raw, path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Model, len(members))
	for _, m := range members {
		spec := strings.TrimSpace(m.key)
		p := path + "[" + quoteKey(m.key) + "]"
		if spec == "" {
			return nil, errAt(p, "empty model spec")
		}
		fields, err := object(m.val, p)
		if err != nil {
			return nil, err
		}
		var mc Model
		for _, f := range fields {
			switch f.key {
			case "context_window":
				if mc.ContextWindow, err = decodePositiveInt(f.val, join(p, f.key)); err != nil {
					return nil, err
				}
			default:
				return nil, unknownField(p, f.key, "context_window")
			}
		}
		out[m.key] = mc
	}
	return out, nil
}

func quoteKey(k string) string { b, _ := json.Marshal(k); return string(b) }

func decodeAudit(raw json.RawMessage, path string) (Audit, error) {
	var a Audit
	members, err := object(raw, path)
	if err != nil {
		return a, err
	}
	for _, m := range members {
		switch m.key {
		case "model_content":
			if a.ModelContent, err = decodeBool(m.val, join(path, m.key)); err != nil {
				return a, err
			}
		default:
			return a, unknownField(path, m.key, "model_content")
		}
	}
	return a, nil
}

func decodeManagedApprovals(raw json.RawMessage, path string) (ManagedApprovals, error) {
	var a ManagedApprovals
	members, err := object(raw, path)
	if err != nil {
		return a, err
	}
	for _, m := range members {
		switch m.key {
		case "allowed_modes":
			p := join(path, m.key)
			names, err := decodeStrings(m.val, p)
			if err != nil {
				return a, err
			}
			if len(names) == 0 {
				return a, errAt(p, "empty; list at least one of ask, deny, auto")
			}
			a.AllowedModes = []policy.Mode{}
			for i, n := range names {
				mode, err := policy.ParseMode(n)
				if err != nil {
					return a, errAt(fmt.Sprintf("%s[%d]", p, i), "%v", err)
				}
				a.AllowedModes = append(a.AllowedModes, mode)
			}
		default:
			return a, unknownField(path, m.key, "allowed_modes")
		}
	}
	return a, nil
}

func decodeManagedSandbox(raw json.RawMessage, path string) (ManagedSandbox, error) {
	var s ManagedSandbox
	members, err := object(raw, path)
	if err != nil {
		return s, err
	}
	for _, m := range members {
		switch m.key {
		case "allow_none":
			if s.AllowNone, err = decodeBool(m.val, join(path, m.key)); err != nil {
				return s, err
			}
		default:
			return s, unknownField(path, m.key, "allow_none")
		}
	}
	return s, nil
}

// decodeEgress reads {"allow": [...], "deny": [...], "max_connections": N, "max_body_bytes": N}:
// host patterns, each checked the way the egress proxy will read it (egress.ParseHostRule), and
// positive caps.
func decodeEgress(raw json.RawMessage, path string) (Egress, error) {
	var e Egress
	members, err := object(raw, path)
	if err != nil {
		return e, err
	}
	for _, m := range members {
		var list *[]string
		switch m.key {
		case "allow":
			list = &e.Allow
		case "deny":
			list = &e.Deny
		case "max_connections":
			if e.MaxConnections, err = decodePositiveInt(m.val, join(path, m.key)); err != nil {
				return e, err
			}
			continue
		case "max_body_bytes":
			n, err := decodePositiveInt(m.val, join(path, m.key))
			if err != nil {
				return e, err
			}
			e.MaxBodyBytes = int64(n)
			continue
		default:
			return e, unknownField(path, m.key, "allow", "deny", "max_body_bytes", "max_connections")
		}
		items, err := decodeStrings(m.val, join(path, m.key))
		if err != nil {
			return e, err
		}
		for i, h := range items {
			if _, err := egress.ParseHostRule(h); err != nil {
				return e, errAt(fmt.Sprintf("%s[%d]", join(path, m.key), i), "%v", err)
			}
		}
		*list = items
	}
	return e, nil
}

// EgressLimits are the egress proxy's caps: the user's, bounded by the managed policy's (the
// lower of the two where both set one; 0 where neither does: the proxy's default).
func (l *Loaded) EgressLimits() (maxConns int, maxBody int64) {
	maxConns, maxBody = l.User.Egress.MaxConnections, l.User.Egress.MaxBodyBytes
	if m := l.Managed; m != nil {
		if c := m.Egress.MaxConnections; c > 0 && (maxConns == 0 || c < maxConns) {
			maxConns = c
		}
		if b := m.Egress.MaxBodyBytes; b > 0 && (maxBody == 0 || b < maxBody) {
			maxBody = b
		}
	}
	return maxConns, maxBody
}

// EgressRules are the egress proxy's capabilities from both layers: every deny first (a deny
// anywhere wins), then the allows of the managed policy and the user.
func (l *Loaded) EgressRules() []egress.Rule {
	var deny, allow []string
	if l.Managed != nil {
		deny = append(deny, l.Managed.Egress.Deny...)
		allow = append(allow, l.Managed.Egress.Allow...)
	}
	deny = append(deny, l.User.Egress.Deny...)
	allow = append(allow, l.User.Egress.Allow...)
	var out []egress.Rule
	for _, h := range deny {
		r, _ := egress.ParseHostRule(h) // checked when the file was read
		r.Deny = true
		out = append(out, r)
	}
	for _, h := range allow {
		r, _ := egress.ParseHostRule(h)
		out = append(out, r)
	}
	return out
}
