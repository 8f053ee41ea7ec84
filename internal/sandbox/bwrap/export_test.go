package bwrap

import "time"

// SetStaleAge lets tests clean up dead sessions' folders without waiting.
func SetStaleAge(d time.Duration) { staleAge.Store(max(int64(d), 1)) }
