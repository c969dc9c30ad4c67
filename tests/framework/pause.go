package framework

import (
	"syscall"
	"time"
)

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

// QuitAll sends SIGQUIT to every running member at once, then waits for
// them to exit: the goroutine stacks in their logs are from the same moment
// (one by one, each member's stacks would show the others already gone).
func (c *Cluster) QuitAll() {
	var quit []*Member
	for _, m := range c.Members {
		if m.Running() {
			_ = m.cmd.Process.Signal(syscall.SIGQUIT)
			quit = append(quit, m)
		}
	}
	for _, m := range quit {
		select {
		case <-m.exited:
		case <-time.After(20 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
}
