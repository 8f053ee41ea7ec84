package inside

import "os"

// init runs the helper, the exec stub or the guard stage when this process was started as
// one: from here, before the program's other packages are initialized, which none needs. Go
// initializes a package once everything it imports is initialized, so what this package uses
// is ready; much of the rest of keepup (model SDKs, SQLite, PDF, HTML) is not yet, and its
// initialization (some 2.5 ms of the 4.5 ms a keepup process takes to start) would otherwise
// be on the path of a session's start (the helper's, and the guard stage's where there is
// one) and of every stub started for a command.
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
