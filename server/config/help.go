package config

import (
	"fmt"
	"io"
	"strings"
)

// usageLine is one row of the help text.
type usageLine struct{ flag, text string }

// writeUsage prints one line per flag with its meaning, default and
// environment variable.
func writeUsage(w io.Writer, opts []option) {
	def := Default()
	var lines []usageLine
	for _, o := range opts {
		d := o.def
		if d == "" {
			d = o.get(&def)
		}
		lines = append(lines, usageLine{"--" + o.name + " " + o.typ,
			fmt.Sprintf("%s (default %q, env %s)", o.usage, d, envName(o.name))})
	}
	lines = append(lines,
		usageLine{"--" + flagConfigFile + " path", "YAML file of option: value lines, keys spelt like the flags (env " + envName(flagConfigFile) + ")"},
		usageLine{"--" + flagVersion, "print the version and exit"},
		usageLine{"-h, --" + flagHelp, "print this help and exit"})
	width := 0
	for _, l := range lines {
		width = max(width, len(l.flag))
	}
	var b strings.Builder
	b.WriteString("Usage: cairn [flags]\n\n")
	b.WriteString("Runs one member of a cairn cluster. Each option may also be set by its\n")
	b.WriteString("CAIRN_* environment variable or as a key of the --config-file YAML file;\n")
	b.WriteString("flags override the environment, which overrides the file.\n\nFlags:\n")
	for _, l := range lines {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, l.flag, l.text)
	}
	_, _ = io.WriteString(w, b.String()) // nothing useful to do if stdout fails
}
