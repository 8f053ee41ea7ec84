package bwrap

import "time"

// SetStaleAge lets tests clean up dead sessions' folders without waiting.
func SetStaleAge(d time.Duration) { staleAge.Store(max(int64(d), 1)) }

// ProbeFile is the file in Config.StateDir that records New's checks of bwrap.
const ProbeFile = probeFile
