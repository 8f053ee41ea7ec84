package scope

import "os"

// Mode is a grant's access mode.
type Mode string

const (
	RO Mode = "ro"
	RW Mode = "rw"
)

// Kind says what a mount is.
type Kind string

const (
	KindGrant   Kind = "grant"   // a folder the user granted
	KindOutputs Kind = "outputs" // read-write, kept under KEEPUP_HOME after the session
	KindUploads Kind = "uploads" // read-only files the user attached; untrusted
)

// Grant is a host folder made visible to the agent.
type Grant struct {
	Name string // mount name: /sessions/<id>/mnt/<Name>
	Path string // absolute host path
	Mode Mode
}

// Mount is an opened grant.
type Mount struct {
	Grant
	Kind Kind
	Root *os.Root

	virtual string // /sessions/<id>/mnt/<Name>, set by Open
	real    string // Path with symlinks evaluated, to map absolute symlink targets back in
}

// Session is one isolated environment's view of the host: its id and its mounts.
type Session struct {
	ID     string
	Mounts []*Mount // user grants in the order given, then outputs, then uploads (if any)
}

// Path is a resolved path: a mount and a clean slash-separated path inside it ("." for the
// mount's root). It carries no host path: host access goes through Mount.Root.
type Path struct {
	Mount *Mount
	Rel   string
}
