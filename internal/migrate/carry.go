package migrate

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/warmcache/warmcache/internal/config"
)

// entry is one runner setting on its way into warmcache's config: where it
// came from, where its value goes and what to tell the admin when it gets
// there.
type entry struct {
	// from is the runner's key as the admin reads it, e.g.
	// "runners.docker.memory".
	from string
	// to are the keys in warmcache's config that take the value, e.g.
	// ["limits","build","memory"]; most entries have one.
	to [][]string
	// value is in the shape warmcache's key takes.
	value any
	// mapped, when set, is said on stderr once the entry is carried: the
	// key's name or meaning differs from the runner's.
	mapped string
}

// note is one stderr line: a runner key and what became of it.
type note struct{ key, text string }

func (n note) String() string { return n.key + ": " + n.text }

// carrier builds warmcache's config one entry at a time, asking warmcache's
// own loader about each: whether the key exists (toml.MetaData.Undecoded),
// whether the value has its shape (the decode error) and whether the whole
// file still validates (config.Parse). No list of supported keys is kept
// here, so a key warmcache adds later is carried as soon as it exists.
type carrier struct {
	doc   map[string]any
	notes []note
}

func newCarrier() *carrier { return &carrier{doc: map[string]any{}} }

// carryAll carries what it can of entries and notes the rest with the
// reason. An entry that fails validation alone may pass once another one is
// in (memory_swap needs memory), so passes repeat while any entry goes in.
func (c *carrier) carryAll(entries []entry) {
	var pending []entry
	for _, e := range entries {
		if e, ok := c.shape(e); ok {
			pending = append(pending, e)
		}
	}
	for progress := true; progress; {
		progress = false
		var rest []entry
		for _, e := range pending {
			if c.add(e) == nil {
				progress = true
				continue
			}
			rest = append(rest, e)
		}
		pending = rest
	}
	for _, e := range pending {
		c.carryElements(e)
	}
}

// shape checks an entry against warmcache's config structure alone: an
// unknown key or a value of the wrong type is noted and the entry dropped;
// parts of a table warmcache does not know (a service's
// suspend_data_path) are noted and stripped, and the rest goes on.
func (c *carrier) shape(e entry) (entry, bool) {
	probe := map[string]any{}
	for _, to := range e.to {
		setPath(probe, to, e.value)
	}
	text, err := encode(probe)
	if err != nil {
		c.notef(e.from, "not carried: %v", err)
		return e, false
	}
	cfg := config.Default()
	md, err := toml.Decode(text, &cfg)
	if err != nil {
		c.notef(e.from, "not carried: warmcache's %s takes another shape (%s)", keyName(e.to[0]), oneLine(err))
		return e, false
	}
	unknown := map[string]bool{}
	for _, k := range md.Undecoded() {
		for _, to := range e.to {
			if slices.Equal(k, to) {
				c.notef(e.from, "not carried: warmcache has no %s", keyName(to))
				return e, false
			}
			if len(k) > len(to) && slices.Equal(k[:len(to)], to) {
				unknown[strings.Join(k[len(to):], ".")] = true
			}
		}
	}
	for _, sub := range slices.Sorted(maps.Keys(unknown)) {
		c.notef(e.from+"."+sub, "not carried: warmcache's %s has no %s", keyName(e.to[0]), sub)
		e.value = strip(e.value, strings.Split(sub, "."))
	}
	return e, true
}

// add puts e into the document if warmcache's loader accepts the result,
// and returns the loader's error otherwise (the document is unchanged).
func (c *carrier) add(e entry) error {
	next := cloneMap(c.doc)
	for _, to := range e.to {
		setPath(next, to, e.value)
	}
	if err := check(next); err != nil {
		return err
	}
	c.doc = next
	if e.mapped != "" {
		c.notef(e.from, "%s", e.mapped)
	}
	return nil
}

// carryElements is the last try for an entry the loader refused: a list is
// carried element by element, each refused element noted with the
// loader's reason (volumes = ["/certs/client", "/cache"] keeps the first
// when warmcache refuses the second). Anything else is noted whole.
func (c *carrier) carryElements(e entry) {
	list, ok := e.value.([]any)
	if !ok || len(list) < 2 || len(e.to) != 1 {
		c.notef(e.from, "not carried: %s", c.refusal(e))
		return
	}
	var kept []any
	var refused []note
	for i, v := range list {
		try := entry{from: e.from, to: e.to, value: append(slices.Clone(kept), v)}
		if err := c.check(try); err != nil {
			key := fmt.Sprintf("%s[%d] = %s", e.from, i, tomlValue(v))
			refused = append(refused, note{key, "not carried: " + c.refusal(entry{from: e.from, to: e.to, value: []any{v}})})
			continue
		}
		kept = append(kept, v)
	}
	if len(kept) > 0 {
		_ = c.add(entry{from: e.from, to: e.to, value: kept, mapped: e.mapped})
	}
	c.notes = append(c.notes, refused...)
}

// check says whether the document with e added would load.
func (c *carrier) check(e entry) error {
	next := cloneMap(c.doc)
	for _, to := range e.to {
		setPath(next, to, e.value)
	}
	return check(next)
}

// refusal is the loader's reason for refusing e on top of the document.
func (c *carrier) refusal(e entry) string {
	if err := c.check(e); err != nil {
		return "warmcache refuses it: " + oneLine(err)
	}
	// Accepted alone but not with the rest of its list.
	return "warmcache refuses it together with the other entries"
}

func (c *carrier) notef(key, format string, args ...any) {
	c.notes = append(c.notes, note{key, fmt.Sprintf(format, args...)})
}

// check loads doc as warmcache would load the file.
func check(doc map[string]any) error {
	text, err := encode(doc)
	if err != nil {
		return err
	}
	_, err = config.Parse(text)
	return err
}

func encode(doc map[string]any) (string, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(doc); err != nil {
		return "", fmt.Errorf("encoding TOML: %w", err)
	}
	return b.String(), nil
}

// tomlValue spells one value as TOML would, for a stderr line.
func tomlValue(v any) string {
	text, err := encode(map[string]any{"v": v})
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(strings.TrimPrefix(text, "v = "))
}

func keyName(path []string) string { return strings.Join(path, ".") }

func oneLine(err error) string {
	var perr toml.ParseError
	if errors.As(err, &perr) {
		return perr.Message
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// setPath sets doc[path[0]]...[path[n-1]] = v, making tables on the way.
func setPath(doc map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		sub, ok := doc[k].(map[string]any)
		if !ok {
			sub = map[string]any{}
			doc[k] = sub
		}
		doc = sub
	}
	doc[path[len(path)-1]] = v
}

// cloneMap copies the tables of doc deeply enough that setPath on the copy
// leaves doc alone (values themselves are never changed in place).
func cloneMap(doc map[string]any) map[string]any {
	out := make(map[string]any, len(doc))
	for k, v := range doc {
		if sub, ok := v.(map[string]any); ok {
			v = cloneMap(sub)
		}
		out[k] = v
	}
	return out
}

// strip returns v without the key at path, in a table or in each table of
// an array of tables; v itself is left alone.
func strip(v any, path []string) any {
	switch t := v.(type) {
	case map[string]any:
		out := maps.Clone(t)
		if len(path) == 1 {
			delete(out, path[0])
		} else if sub, ok := out[path[0]]; ok {
			out[path[0]] = strip(sub, path[1:])
		}
		return out
	case []map[string]any:
		out := make([]map[string]any, len(t))
		for i, m := range t {
			out[i] = strip(m, path).(map[string]any)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, m := range t {
			out[i] = strip(m, path)
		}
		return out
	}
	return v
}
