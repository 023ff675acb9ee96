// Package migrate turns a gitlab-runner config.toml runner of the Docker
// executor into warmcache's config and the [runners.custom] block that
// points the runner at warmcache (`warmcache migrate`).
//
// Every [runners.docker] key is offered to warmcache's own config loader
// under the same name, so a key warmcache supports is carried the day it
// exists; only keys warmcache names or shapes differently are mapped here.
// Whatever is not carried is said, one line per key, with the reason.
package migrate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/warmcache/warmcache/internal/config"
)

// Options are the command's flags.
type Options struct {
	// Source names the runner's config file in messages.
	Source string
	// Runner is the [[runners]] name to migrate; "" picks the only runner
	// with executor = "docker".
	Runner string
	// Exe is the absolute path of the warmcache binary, for the
	// [runners.custom] block.
	Exe string
	// ConfigPath is where the admin will keep warmcache's config; the
	// block passes it with --config.
	ConfigPath string
}

// Result is what the command prints.
type Result struct {
	// Runner is the name of the migrated runner.
	Runner string
	// Text is warmcache's config TOML followed by the [runners.custom]
	// block as TOML comments; as a whole, it loads as warmcache's config.
	Text string
	// Notes are the stderr lines: each runner key not carried as it is,
	// with the reason.
	Notes []string
}

// dockerExecutors are the executors whose [runners.docker] section this
// command reads; only "docker" is picked without --runner.
var dockerExecutors = []string{"docker", "docker+machine", "docker-autoscaler"}

// Migrate reads the runner config text and migrates the chosen runner.
// Its error is one line: the file is not TOML, or no runner fits.
func Migrate(text string, o Options) (Result, error) {
	var file map[string]any
	if _, err := toml.Decode(text, &file); err != nil {
		return Result{}, fmt.Errorf("%s: %s", o.Source, oneLine(err))
	}
	runner, name, err := pick(file, o)
	if err != nil {
		return Result{}, err
	}
	c := newCarrier()
	docker, _ := runner["docker"].(map[string]any)
	c.carryAll(append(globalEntries(file), dockerEntries(docker, c)...))
	runnerNotes(runner, c)

	// The document was checked at every step; loading it once more gives
	// the values the [runners.custom] block derives from.
	body, err := encode(c.doc)
	if err != nil {
		return Result{}, err
	}
	cfg, err := config.Parse(body)
	if err != nil {
		return Result{}, fmt.Errorf("internal error: the migrated config does not load: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# warmcache config migrated from %s, runner %q by `warmcache migrate`.\n", o.Source, name)
	fmt.Fprintf(&b, "# Save it as %s and check it with: %s --config %s config\n", o.ConfigPath, o.Exe, o.ConfigPath)
	b.WriteString("# Keys not set here take warmcache's defaults; what was not carried is on stderr.\n\n")
	b.WriteString(body)
	if body != "" {
		b.WriteString("\n")
	}
	b.WriteString(customBlock(name, o, cfg, runner))

	notes := make([]string, 0, len(c.notes))
	slices.SortStableFunc(c.notes, func(a, b note) int { return strings.Compare(a.key, b.key) })
	for _, n := range c.notes {
		notes = append(notes, n.String())
	}
	return Result{Runner: name, Text: b.String(), Notes: notes}, nil
}

// pick finds the runner to migrate: the one named o.Runner, else the only
// one with executor = "docker".
func pick(file map[string]any, o Options) (map[string]any, string, error) {
	runners, _ := file["runners"].([]map[string]any)
	var all, docker []string
	for _, r := range runners {
		name, _ := r["name"].(string)
		executor, _ := r["executor"].(string)
		all = append(all, fmt.Sprintf("%q (%s)", name, executor))
		if executor == "docker" {
			docker = append(docker, fmt.Sprintf("%q", name))
		}
	}
	if len(runners) == 0 {
		return nil, "", fmt.Errorf("%s has no [[runners]]", o.Source)
	}
	var found []map[string]any
	for _, r := range runners {
		name, _ := r["name"].(string)
		executor, _ := r["executor"].(string)
		if o.Runner != "" && name == o.Runner || o.Runner == "" && executor == "docker" {
			found = append(found, r)
		}
	}
	switch {
	case o.Runner != "" && len(found) == 0:
		return nil, "", fmt.Errorf("%s has no runner named %q; its runners: %s", o.Source, o.Runner, strings.Join(all, ", "))
	case o.Runner != "" && len(found) > 1:
		return nil, "", fmt.Errorf("%s has %d runners named %q; give each its own name first", o.Source, len(found), o.Runner)
	case o.Runner == "" && len(found) == 0:
		return nil, "", fmt.Errorf("%s has no runner with executor = \"docker\"; its runners: %s", o.Source, strings.Join(all, ", "))
	case o.Runner == "" && len(found) > 1:
		return nil, "", fmt.Errorf("%s has %d docker runners (%s); choose one with --runner NAME", o.Source, len(found), strings.Join(docker, ", "))
	}
	r := found[0]
	name, _ := r["name"].(string)
	if executor, _ := r["executor"].(string); !slices.Contains(dockerExecutors, executor) {
		return nil, "", fmt.Errorf("%s: runner %q has executor = %q; only %s runners can be migrated", o.Source, name, executor, strings.Join(dockerExecutors, ", "))
	}
	if _, ok := r["docker"].(map[string]any); !ok {
		return nil, "", fmt.Errorf("%s: runner %q has no [runners.docker] section", o.Source, name)
	}
	return r, name, nil
}

// isZero reports whether v is TOML's zero of its type: the runner reads a
// zero value as unset, so there is nothing to carry.
func isZero(v any) bool {
	switch t := v.(type) {
	case string:
		return t == ""
	case bool:
		return !t
	case int64:
		return t == 0
	case float64:
		return t == 0
	case []any:
		return len(t) == 0
	case []map[string]any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}
