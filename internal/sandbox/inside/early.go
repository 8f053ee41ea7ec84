package inside

import "os"

// init runs the helper, the exec stub or the guard stage when this process was started as
// one: from here, before the program's other packages are initialized, which none needs. Go
// initializes a package once everything it imports is initialized, so what this package uses
// is ready; much of the rest of keepup (model SDKs, SQLite, PDF, HTML) is not yet, and its
// initialization would otherwise be on the path of a session's start (the helper's, and the
// guard stage's where there is one) and of every stub started for a command. Among the
// packages whose imports are ready, Go initializes first the one whose path sorts first: this
// one waits for the last of its imports, so it imports only what is initialized early (not
// net: see Conn and TestEarlyDeps). About 95 of keepup's packages are initialized before it.
func init() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case HelperCommand:
		os.Exit(HelperMain(os.Args[2:]))
	case ExecCommand:
		os.Exit(ExecMain(os.Args[2:]))
	case GuardCommand:
		os.Exit(GuardMain(os.Args[2:]))
	}
}
