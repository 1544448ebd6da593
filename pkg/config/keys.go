package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	durationType = reflect.TypeOf(Duration{})
	strategyType = reflect.TypeOf(Strategy{})
)

// checkKeys walks the YAML document alongside the Config type and reports
// the first key that the type does not have, by its full path, with the keys
// that are allowed there, or the first value of the wrong kind (a word for
// a number, a list for a string, "soon" for a duration).
func checkKeys(root *yaml.Node, cfg Config) error {
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	return walk(root, reflect.TypeOf(cfg), "")
}

// walk checks the node n against the type t at path, one case per kind
// of type.
func walk(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t == durationType:
		if err := n.Decode(new(Duration)); err != nil {
			return fieldErr(display(path), err.Error())
		}
		return nil
	case t == strategyType && n.Kind == yaml.ScalarNode:
		return nil
	case t.Kind() == reflect.Struct:
		return walkStruct(n, t, path)
	case t.Kind() == reflect.Map:
		return walkMap(n, t, path)
	case t.Kind() == reflect.Slice:
		return walkSlice(n, t, path)
	default:
		return walkScalar(n, t, path)
	}
}

// walkStruct checks a mapping against the struct t: every key must be
// one of its fields, and every value must fit that field.
func walkStruct(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.MappingNode {
		return fieldErr(display(path), "must be a mapping of keys")
	}
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		f, ok := fields[k]
		if !ok {
			return fieldErr(join(path, k), "unknown key", sortedKeys(fields)...)
		}
		if err := walk(n.Content[i+1], f.Type, join(path, k)); err != nil {
			return err
		}
	}
	return nil
}

// walkMap checks a mapping (or null) against the map type t: any key,
// every value of t's element type.
func walkMap(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return nil
		}
		return fieldErr(display(path), "must be a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if err := walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
			return err
		}
	}
	return nil
}

// walkSlice checks a list (or null) against the slice type t, every item
// of t's element type.
func walkSlice(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.SequenceNode {
		if n.Tag == "!!null" {
			return nil
		}
		return fieldErr(display(path), "must be a list")
	}
	for i, c := range n.Content {
		if err := walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

// walkScalar checks that n is a single value that decodes as a t.
func walkScalar(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.ScalarNode {
		return fieldErr(display(path), "must be a single value, not a list or mapping")
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return fieldErr(display(path), fmt.Sprintf("%q is not a %s", n.Value, scalarKind(t)))
	}
	return nil
}

// scalarKind names what a scalar of type t must be.
func scalarKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "whole number"
	case reflect.Float64, reflect.Float32:
		return "number"
	case reflect.Bool:
		return "boolean (true or false)"
	}
	return t.Kind().String()
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		out[name] = f
	}
	return out
}

func sortedKeys(m map[string]reflect.StructField) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func display(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// applyEnv overrides scalar keys from KAAR_<SECTION>_<KEY> variables, for
// example KAAR_SERVER_PORT=9090 or KAAR_NATS_URL=nats://nats:4222. List keys
// take a comma-separated value (KAAR_POLICY_PROTECTED_NAMESPACES=a,b).
func applyEnv(cfg *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "KAAR_") {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	return envStruct(reflect.ValueOf(cfg).Elem(), "", env)
}

func envStruct(v reflect.Value, path string, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		key := join(path, name)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			if err := envStruct(fv, key, env); err != nil {
				return err
			}
			continue
		}
		envName := "KAAR_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		raw, ok := env[envName]
		if !ok {
			continue
		}
		if err := setScalar(fv, raw); err != nil {
			return fieldErr(key, fmt.Sprintf("environment variable %s=%q: %v", envName, raw, err))
		}
	}
	return nil
}

func setScalar(v reflect.Value, raw string) error {
	if v.Type() == durationType {
		var d Duration
		if err := d.UnmarshalYAML(&yaml.Node{Kind: yaml.ScalarNode, Value: raw}); err != nil {
			return err
		}
		v.Set(reflect.ValueOf(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		v.SetInt(int64(n))
	case reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("want a number")
		}
		v.SetFloat(f)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot be set from the environment")
		}
		var parts []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}
