//go:build !failpoints

package failpoint

// Enabled reports whether this binary was built with the failpoints tag.
const Enabled = false

// Hit does nothing in normal builds.
func Hit(string) {}
