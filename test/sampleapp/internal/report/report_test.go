package report

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildIsDeterministic(t *testing.T) {
	a, err := Build(Options{Name: "warm cache"})
	require.NoError(t, err)
	b, err := Build(Options{Name: "warm cache"})
	require.NoError(t, err)
	assert.Equal(t, a.Line(), b.Line())
	assert.Equal(t, "Warm Cache", a.Greeting.Name)
	assert.Equal(t, "2 words", a.Query)
	assert.Equal(t, []string{"json", "toml", "yaml"}, sortedKeys(a.Sizes))
}

func TestBuildRejectsEmptyName(t *testing.T) {
	_, err := Build(Options{Name: "  "})
	assert.Error(t, err)
}

func TestLoadOptionsLayers(t *testing.T) {
	flags := pflag.NewFlagSet("sampleapp", pflag.ContinueOnError)
	flags.String("name", DefaultName, "")
	flags.Bool("verbose", false, "")

	opts, err := LoadOptions(nil, flags)
	require.NoError(t, err)
	assert.Equal(t, Options{Name: DefaultName}, opts)

	env := []string{"SAMPLEAPP_NAME=from env", "SAMPLEAPP_VERBOSE=true", "OTHER=x"}
	opts, err = LoadOptions(env, flags)
	require.NoError(t, err)
	assert.Equal(t, Options{Name: "from env", Verbose: true}, opts)

	require.NoError(t, flags.Parse([]string{"--name", "from flag"}))
	opts, err = LoadOptions(env, flags)
	require.NoError(t, err)
	assert.Equal(t, Options{Name: "from flag", Verbose: true}, opts)
}

func sortedKeys(m map[string]int) []string {
	var keys []string
	for _, k := range []string{"json", "toml", "yaml"} {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	return keys
}
