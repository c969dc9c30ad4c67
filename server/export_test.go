package server

// Crash stops the member the way a crash would look to its peers: no
// leadership transfer, no goodbye. (Pebble still closes cleanly; the
// process-level kill -9 tests cover an abrupt end of the process.)
func (s *Server) Crash() { s.stop(false) }
