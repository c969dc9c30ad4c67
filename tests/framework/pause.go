package framework

import "syscall"

// Pause stops m's process with SIGSTOP: it keeps its sockets but answers
// nothing until Resume.
func (c *Cluster) Pause(m *Member) {
	if m.Running() {
		_ = m.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// Resume continues a paused member with SIGCONT.
func (c *Cluster) Resume(m *Member) {
	if m.Running() {
		_ = m.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// Quit sends SIGQUIT to m, so the Go runtime writes every goroutine's stack
// to its log before it exits, and waits for the exit: a diagnosis of a stuck
// member.
func (c *Cluster) Quit(m *Member) { c.signal(m, syscall.SIGQUIT) }
