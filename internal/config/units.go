package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warmcache/warmcache/internal/limits"
)

// A bare number is refused where its unit could be misread, so that an
// admin who ports `wait_for_services_timeout = 30` (seconds in the
// runner's config) or writes `max_idle = 720` (hours, meant) does not get
// 30 or 720 nanoseconds, nor `budget = 100` (GiB, meant) 100 bytes. The
// keys are found by walking the Config struct, so a new key of one of
// these types is checked without being listed here:
//
//   - every time.Duration: a TOML number is refused; strings are read by
//     time.ParseDuration ("90s", "12m", "720h").
//   - every Size (cache.gc): a TOML number and a string without a unit
//     are refused; a misread there evicts every cache.
//   - the size strings of [limits] (memory, memory_swap,
//     memory_reservation, shm_size) keep Docker's reading, a number
//     without a unit is bytes, as `docker run --memory` and the runner's
//     own keys read it (too small a memory is refused by the engine's 6m
//     minimum). Only a TOML number there, as the runner's `shm_size`
//     takes, is refused, with the spelling to use instead of a type error.

// durationUnit is the unit a bare number of a duration key most likely
// meant, offered first; the reading as seconds (the runner's integer
// timeouts) is offered too. Keys not listed: seconds.
var durationUnit = map[string]time.Duration{
	"cache.gc.max_idle":         time.Hour,
	"reap.grace":                time.Minute,
	"cache.remote.min_interval": time.Minute,
}

// limitsSizeFields are the fields of limits.Set and limits.JobSet that
// hold a size.
var limitsSizeFields = []string{"Memory", "MemorySwap", "MemoryReservation", "ShmSize"}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	sizeType      = reflect.TypeFor[Size]()
	limitsSetType = []reflect.Type{reflect.TypeFor[limits.Set](), reflect.TypeFor[limits.JobSet]()}
)

// unitKind is what kind of unit-bearing key a struct field is.
type unitKind int

const (
	notUnit unitKind = iota
	durationKey
	sizeKey       // Size: a unit is required
	limitsSizeKey // a [limits] size string: a TOML number is refused
)

func kindOf(parent reflect.Type, f reflect.StructField) unitKind {
	switch {
	case f.Type == durationType:
		return durationKey
	case f.Type == sizeType:
		return sizeKey
	case f.Type.Kind() == reflect.String && slices.Contains(limitsSetType, parent) && slices.Contains(limitsSizeFields, f.Name):
		return limitsSizeKey
	}
	return notUnit
}

// unitProblems checks the raw decoded file (a map from toml.Decode) for
// numbers without a unit, naming each key as the other problems do.
func unitProblems(raw map[string]any) []string {
	var p []string
	walkUnits(reflect.TypeFor[Config](), raw, "", func(key string, kind unitKind, v any) {
		if msg := unitProblem(key, kind, v); msg != "" {
			p = append(p, msg)
		}
	})
	return p
}

// walkUnits calls fn for every unit-bearing key of struct type t, with
// the key's full name and its raw value. With raw nil it visits every key
// the type has (arrays of tables as element [0]), present or not.
func walkUnits(t reflect.Type, raw map[string]any, prefix string, fn func(key string, kind unitKind, v any)) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if f.Anonymous && name == "" {
			// Embedded option structs decode inline.
			walkUnits(f.Type, raw, prefix, fn)
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		v, present := raw[name]
		if !present && raw != nil {
			continue
		}
		if kind := kindOf(t, f); kind != notUnit {
			fn(key, kind, v)
			continue
		}
		switch {
		case f.Type.Kind() == reflect.Struct:
			sub, _ := v.(map[string]any)
			if raw != nil && sub == nil {
				continue
			}
			walkUnits(f.Type, sub, key, fn)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			if raw == nil {
				walkUnits(f.Type.Elem(), nil, key+"[0]", fn)
				continue
			}
			list, _ := v.([]map[string]any)
			for j, el := range list {
				walkUnits(f.Type.Elem(), el, fmt.Sprintf("%s[%d]", key, j), fn)
			}
		}
	}
}

// unitProblem is the one-line problem of a raw value, "" when it has a
// unit (or is not a number: the decoder reports that).
func unitProblem(key string, kind unitKind, v any) string {
	var n int64
	var text string
	switch x := v.(type) {
	case int64:
		n, text = x, strconv.FormatInt(x, 10)
	case float64:
		n, text = int64(x), strconv.FormatFloat(x, 'f', -1, 64)
		if float64(n) != x {
			// A fraction has no exact spelling to offer; name the units.
			if kind == durationKey {
				return fmt.Sprintf("%s: %s has no unit; write a duration such as \"90s\", \"12m\" or \"1h30m\"", key, text)
			}
			return fmt.Sprintf("%s: %s has no unit; write a size such as \"512m\" or \"1.5g\"", key, text)
		}
	case string:
		// Only Size insists on a unit in a string.
		t := strings.TrimSpace(x)
		u, err := strconv.ParseInt(t, 10, 64)
		if kind != sizeKey || err != nil {
			return ""
		}
		n, text = u, strconv.Quote(x)
	default:
		return ""
	}
	switch {
	case n == 0:
		return "" // 0 is 0 in every unit
	case n < 0 && kind == durationKey:
		return fmt.Sprintf("%s: %s is not a duration; write one with a unit such as \"30s\"", key, text)
	case n < 0:
		return fmt.Sprintf("%s: %s is not a size; write one with a unit such as \"20g\"", key, text)
	}
	var spellings []string
	switch kind {
	case durationKey:
		unit := durationUnit[key]
		if unit == 0 {
			unit = time.Second
		}
		spellings = []string{durationString(time.Duration(n) * unit), durationString(time.Duration(n) * time.Second)}
	case sizeKey, limitsSizeKey:
		// Large numbers were meant as bytes; small ones as GiB or MiB.
		if n >= 1<<20 || kind == limitsSizeKey {
			spellings = []string{sizeString(n)}
		} else {
			spellings = []string{strconv.FormatInt(n, 10) + "g", strconv.FormatInt(n, 10) + "m"}
		}
	}
	spellings = slices.Compact(spellings)
	for i, s := range spellings {
		spellings[i] = strconv.Quote(s)
	}
	return fmt.Sprintf("%s: %s has no unit; write %s", key, text, strings.Join(spellings, " or "))
}

// durationString spells d in its largest exact unit: "720h", "12m", "90s".
func durationString(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}

// sizeString spells n bytes in its largest exact binary unit: "100g".
func sizeString(n int64) string {
	for _, u := range []struct {
		b    int64
		name string
	}{{1 << 40, "t"}, {1 << 30, "g"}, {1 << 20, "m"}, {1 << 10, "k"}} {
		if n != 0 && n%u.b == 0 {
			return strconv.FormatInt(n/u.b, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "b"
}
