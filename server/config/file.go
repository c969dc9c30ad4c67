package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseFile reads the YAML config file: one mapping from flag names to
// scalars (or, for list options, sequences of scalars). It returns the
// settings in file order and every problem found.
func parseFile(data []byte, path string, opts []option) ([]setting, []error) {
	fileWhere := fmt.Sprintf("config file %q", path)
	fail := func(format string, args ...any) []error {
		return []error{&Error{Source: SourceFile, Where: fileWhere, Msg: fmt.Sprintf(format, args...)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, fail("not valid YAML: %v", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fail("holds more than one YAML document (line %d): keep one", extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, fail("not valid YAML: %v", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil // only comments, or "---"
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail("line %d: the top level must be a mapping of option names to values, like \"name: infra0\"", root.Line)
	}

	byName := make(map[string]*option, len(opts))
	var keys []string
	for i := range opts {
		byName[opts[i].name] = &opts[i]
		keys = append(keys, opts[i].name)
	}
	var settings []setting
	var errs []error
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		where := fmt.Sprintf("%s line %d", fileWhere, k.Line)
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, &Error{Source: SourceFile, Where: where, Msg: "a key must be an option name"})
			continue
		}
		where += fmt.Sprintf(" key %q", k.Value)
		o, ok := byName[k.Value]
		if !ok {
			errs = append(errs, &Error{Source: SourceFile, Where: where, Msg: unknownKeyMsg(k.Value, keys)})
			continue
		}
		if line, dup := seen[k.Value]; dup {
			errs = append(errs, &Error{Flag: o.name, Source: SourceFile, Where: where,
				Msg: fmt.Sprintf("given twice (first on line %d): keep one", line)})
			continue
		}
		seen[k.Value] = k.Line
		s, err := nodeText(v, o.list)
		if err != nil {
			errs = append(errs, &Error{Flag: o.name, Source: SourceFile, Where: where, Msg: err.Error()})
			continue
		}
		settings = append(settings, setting{o, s, SourceFile, where})
	}
	return settings, errs
}

func unknownKeyMsg(key string, keys []string) string {
	switch {
	case key == flagConfigFile:
		return "a config file cannot name another config file"
	case strings.Contains(key, "_"):
		if alt := strings.ReplaceAll(key, "_", "-"); slices.Contains(keys, alt) {
			return fmt.Sprintf("no such option: keys are spelt like flags, %q", alt)
		}
	}
	return "no such option" + suggest(key, keys, "")
}

// nodeText returns the text of a scalar, or of a sequence of scalars joined
// with commas when list is set.
func nodeText(n *yaml.Node, list bool) (string, error) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", errors.New("has no value: give one or remove the key")
		}
		return n.Value, nil
	case yaml.SequenceNode:
		if !list {
			return "", errors.New("is a list, but this option takes one value")
		}
		items := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind == yaml.AliasNode && item.Alias != nil {
				item = item.Alias
			}
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
				return "", fmt.Errorf("line %d: list items must be plain values", item.Line)
			}
			items = append(items, item.Value)
		}
		return strings.Join(items, ","), nil
	default:
		return "", errors.New("is a mapping, but this option takes a value")
	}
}
