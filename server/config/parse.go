package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// setting is one raw value read from one source, not yet converted.
type setting struct {
	opt    *option
	value  string
	source string // SourceFile, SourceEnv or SourceFlag
	where  string // for messages, see Error.Where
}

// Parse builds a Config from command-line arguments (without the program
// name), the environment as seen through getenv (os.LookupEnv in a
// program), and the YAML file named by --config-file or CAIRN_CONFIG_FILE.
// It resolves derived defaults and validates the result; on any problem it
// returns the zero Config and all problems joined. For --help it writes the
// usage to stdout and returns ErrHelp; for --version it returns ErrVersion.
// A nil getenv means an empty environment; a nil stdout discards the usage.
//
// Parse cannot list the environment, so it does not notice misspelt CAIRN_*
// variables; ParseEnviron does.
func Parse(args []string, getenv func(string) (string, bool), stdout io.Writer) (Config, error) {
	return parse(args, getenv, nil, stdout)
}

// ParseEnviron is Parse with the environment given as "KEY=value" strings
// (os.Environ in a program). It also rejects CAIRN_* variables that name no
// option, suggesting the closest one.
func ParseEnviron(args, environ []string, stdout io.Writer) (Config, error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := env[k]; !dup { // the first one wins, as in os.Getenv
			env[k] = v
		}
	}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	return parse(args, getenv, unknownEnv(env), stdout)
}

// unknownEnv reports CAIRN_* variables that are not options.
func unknownEnv(env map[string]string) []error {
	known := map[string]bool{envName(flagConfigFile): true, envName(flagVersion): true}
	names := []string{envName(flagConfigFile)}
	for _, o := range optionTable() {
		known[envName(o.name)] = true
		names = append(names, envName(o.name))
	}
	var errs []error
	for k := range env {
		if rest, ok := strings.CutPrefix(k, envPrefix); ok && !known[k] {
			errs = append(errs, &Error{Source: SourceEnv, Where: "environment variable " + k,
				Msg: "no such option" + suggest(rest, names, envPrefix)})
		}
	}
	sortErrors(errs)
	return errs
}

func parse(args []string, getenv func(string) (string, bool), errs []error, stdout io.Writer) (Config, error) {
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	if stdout == nil {
		stdout = io.Discard
	}
	opts := optionTable()
	fs, configFile, help, version := newFlagSet(opts)
	if err := fs.Parse(etcdStyleArgs(args, fs)); err != nil {
		return Config{}, flagParseError(err, fs)
	}
	if *help {
		writeUsage(stdout, opts)
		return Config{}, ErrHelp
	}
	if *version {
		return Config{}, ErrVersion
	}
	if fs.NArg() > 0 {
		errs = append(errs, &Error{Source: SourceFlag, Where: "argument " + fmt.Sprintf("%q", fs.Arg(0)),
			Msg: "unexpected argument: every option is a --flag"})
	}
	var settings []setting
	path := *configFile
	if !fs.Changed(flagConfigFile) {
		path, _ = getenv(envName(flagConfigFile))
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: reading --config-file: %w", err)
		}
		fileSettings, fileErrs := parseFile(data, path, opts)
		settings = append(settings, fileSettings...)
		errs = append(errs, fileErrs...)
	}
	settings = append(settings, envSettings(opts, getenv)...)
	settings = append(settings, flagSettings(opts, fs)...)

	c := underivedDefault()
	for _, s := range settings {
		if err := s.opt.set(&c, s.value); err != nil {
			errs = append(errs, &Error{Flag: s.opt.name, Source: s.source, Where: s.where, Msg: err.Error()})
			continue
		}
		c.origin[s.opt.id] = s.where
		if s.source == SourceFlag {
			c.origin[s.opt.id] = "" // messages name the flag already
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	c.Resolve()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// newFlagSet defines every flag. Option flags record their text unconverted;
// conversion happens with the other sources so errors read alike.
func newFlagSet(opts []option) (fs *pflag.FlagSet, configFile *string, help, version *bool) {
	fs = pflag.NewFlagSet("cairn", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	for i := range opts {
		f := fs.VarPF(&rawValue{}, opts[i].name, "", opts[i].usage)
		if opts[i].typ == "bool" {
			f.NoOptDefVal = "true" // --flag alone means true
		}
	}
	configFile = fs.String(flagConfigFile, "", "")
	version = fs.Bool(flagVersion, false, "")
	help = fs.BoolP(flagHelp, "h", false, "")
	return fs, configFile, help, version
}

// rawValue is a pflag.Value that keeps the text it was set to.
type rawValue struct{ s string }

func (v *rawValue) String() string     { return v.s }
func (v *rawValue) Set(s string) error { v.s = s; return nil }
func (v *rawValue) Type() string       { return "string" }

func flagSettings(opts []option, fs *pflag.FlagSet) []setting {
	var out []setting
	for i := range opts {
		if f := fs.Lookup(opts[i].name); f.Changed {
			out = append(out, setting{&opts[i], f.Value.String(), SourceFlag, "flag --" + opts[i].name})
		}
	}
	return out
}

func envSettings(opts []option, getenv func(string) (string, bool)) []setting {
	var out []setting
	for i := range opts {
		name := envName(opts[i].name)
		if v, ok := getenv(name); ok && v != "" {
			out = append(out, setting{&opts[i], v, SourceEnv, "environment variable " + name})
		}
	}
	return out
}

// etcdStyleArgs rewrites -long-flag to --long-flag, the single-dash
// spelling that etcd (which uses the standard flag package) accepts.
func etcdStyleArgs(args []string, fs *pflag.FlagSet) []string {
	out := make([]string, 0, len(args))
	takesValue := false
	for i, a := range args {
		if takesValue { // a flag's value: leave it alone, even if it starts with "-"
			out = append(out, a)
			takesValue = false
			continue
		}
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			if name, _, _ := strings.Cut(a[1:], "="); fs.Lookup(name) != nil {
				a = "-" + a
			}
		}
		if rest, ok := strings.CutPrefix(a, "--"); ok {
			name, _, hasValue := strings.Cut(rest, "=")
			if f := fs.Lookup(name); f != nil && !hasValue && f.NoOptDefVal == "" {
				takesValue = true
			}
		}
		out = append(out, a)
	}
	return out
}

// flagParseError turns a pflag error into an *Error, with a suggestion for
// an unknown flag.
func flagParseError(err error, fs *pflag.FlagSet) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		var names []string
		fs.VisitAll(func(f *pflag.Flag) { names = append(names, "--"+f.Name) })
		msg = "unknown flag --" + name + suggest(name, names, "--")
	}
	return &Error{Source: SourceFlag, Msg: msg}
}

func sortErrors(errs []error) {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
}
