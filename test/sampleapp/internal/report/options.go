package report

import (
	"strconv"
	"strings"

	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// DefaultName is who is greeted unless told otherwise.
const DefaultName = "warm cache"

// Options say what to report on.
type Options struct {
	Name    string `koanf:"name"`
	Verbose bool   `koanf:"verbose"`
}

// mapProvider feeds a flat map to koanf.
type mapProvider map[string]any

func (m mapProvider) ReadBytes() ([]byte, error)    { return nil, nil }
func (m mapProvider) Read() (map[string]any, error) { return m, nil }

// LoadOptions layers the defaults, SAMPLEAPP_* variables of environ and
// the flags the user set.
func LoadOptions(environ []string, flags *pflag.FlagSet) (Options, error) {
	k := koanf.New(".")
	layers := []mapProvider{
		{"name": DefaultName, "verbose": false},
		envLayer(environ),
		flagLayer(flags),
	}
	for _, layer := range layers {
		if err := k.Load(layer, nil); err != nil {
			return Options{}, err
		}
	}
	var opts Options
	err := k.UnmarshalWithConf("", &opts, koanf.UnmarshalConf{Tag: "koanf", FlatPaths: true})
	return opts, err
}

func envLayer(environ []string) mapProvider {
	m := mapProvider{}
	for _, kv := range environ {
		key, value, _ := strings.Cut(kv, "=")
		name, ok := strings.CutPrefix(key, "SAMPLEAPP_")
		if !ok {
			continue
		}
		name = strings.ToLower(name)
		if name == "verbose" {
			m[name], _ = strconv.ParseBool(value)
		} else {
			m[name] = value
		}
	}
	return m
}

func flagLayer(flags *pflag.FlagSet) mapProvider {
	m := mapProvider{}
	if flags == nil {
		return m
	}
	flags.Visit(func(f *pflag.Flag) {
		if f.Value.Type() == "bool" {
			m[f.Name], _ = strconv.ParseBool(f.Value.String())
		} else {
			m[f.Name] = f.Value.String()
		}
	})
	return m
}
