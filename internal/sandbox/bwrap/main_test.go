package bwrap_test

import (
	"os"
	"testing"

	"github.com/keepup/keepup/internal/sandbox/inside"
)

// TestMain lets the test binary stand in for keepup inside the sandbox: the backend runs
// Config.Exe (this binary) as the helper and the exec stub.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case inside.HelperCommand:
			os.Exit(inside.HelperMain(os.Args[2:]))
		case inside.ExecCommand:
			os.Exit(inside.ExecMain(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}
