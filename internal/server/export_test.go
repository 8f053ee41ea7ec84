package server

import "time"

// SetStreamTimings shortens a Server's SSE keepalive interval and its wait for the
// task.finished event of an ended task, for tests.
func SetStreamTimings(s *Server, keepAlive, finishGrace time.Duration) {
	s.keepAlive, s.finishGrace = keepAlive, finishGrace
}
