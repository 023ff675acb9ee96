package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// unitRow is one duration or size key: the file with a bare number and
// the exact problem, and the file with a unit and what it reads as.
type unitRow struct {
	key      string
	bare     string
	problem  string
	withUnit string
	get      func(Config) any // nil: only that the file is accepted
	want     any
}

func unitRows() []unitRow {
	rows := []unitRow{
		{"docker.cleanup_timeout", "[docker]\ncleanup_timeout = 90\n", `docker.cleanup_timeout: 90 has no unit; write "90s"`,
			"[docker]\ncleanup_timeout = \"90s\"\n", func(c Config) any { return c.Docker.CleanupTimeout }, 90 * time.Second},
		{"cache.remote.min_interval", "[cache.remote]\nmin_interval = 10\n", `cache.remote.min_interval: 10 has no unit; write "10m" or "10s"`,
			"[cache.remote]\nmin_interval = \"10m\"\n", func(c Config) any { return c.Cache.Remote.MinInterval }, 10 * time.Minute},
		{"cache.gc.max_idle", "[cache.gc]\nmax_idle = 720\n", `cache.gc.max_idle: 720 has no unit; write "720h" or "12m"`,
			"[cache.gc]\nmax_idle = \"720h\"\n", func(c Config) any { return c.Cache.GC.MaxIdle }, 720 * time.Hour},
		{"services.wait_timeout", "[services]\nwait_timeout = 30\n", `services.wait_timeout: 30 has no unit; write "30s"`,
			"[services]\nwait_timeout = \"30s\"\n", func(c Config) any { return c.Services.WaitTimeout }, 30 * time.Second},
		{"reap.grace", "[reap]\ngrace = 60\n", `reap.grace: 60 has no unit; write "1h" or "1m"`,
			"[reap]\ngrace = \"60m\"\n", func(c Config) any { return c.Reap.Grace }, time.Hour},
		{"cache.gc.max_volume_size", "[cache.gc]\nmax_volume_size = 20\n", `cache.gc.max_volume_size: 20 has no unit; write "20g" or "20m"`,
			"[cache.gc]\nmax_volume_size = \"20g\"\n", func(c Config) any { return c.Cache.GC.MaxVolumeSize }, Size(20 << 30)},
		{"cache.quota", "[cache]\nquota = 21474836480\n", `cache.quota: 21474836480 has no unit; write "20g"`,
			"[cache]\nquota = \"20g\"\n", func(c Config) any { return int64(c.Cache.Quota) }, int64(20 << 30)},
		{"cache.gc.budget", "[cache.gc]\nbudget = 107374182400\n", `cache.gc.budget: 107374182400 has no unit; write "100g"`,
			"[cache.gc]\nbudget = \"100GB\"\n", func(c Config) any { return c.Cache.GC.Budget }, Size(100 << 30)},
		{"cache.gc.min_free_disk", "[cache.gc]\nmin_free_disk = \"10\"\n", `cache.gc.min_free_disk: "10" has no unit; write "10g" or "10m"`,
			"[cache.gc]\nmin_free_disk = \"10GiB\"\n", func(c Config) any { return c.Cache.GC.MinFreeDisk }, Size(10 << 30)},
	}
	// The [limits] sizes: the same rows under every set, general and per
	// project. A string without a unit stays bytes there, as Docker reads it.
	for _, section := range []struct{ key, header string }{
		{"limits", "[limits.%s]\n"},
		{"limits.project[0]", "[[limits.project]]\npath = \"g/*\"\n[limits.project.%s]\n"},
	} {
		for _, set := range []string{"job", "build", "helper", "services"} {
			for _, field := range []string{"memory", "memory_swap", "memory_reservation", "shm_size"} {
				if set == "job" && field != "memory" {
					continue
				}
				head := strings.Replace(section.header, "%s", set, 1)
				if field == "memory_swap" {
					head += "memory = \"512m\"\n"
				}
				key := section.key + "." + set + "." + field
				rows = append(rows, unitRow{key, head + field + " = 1073741824\n", key + `: 1073741824 has no unit; write "1g"`,
					head + field + " = \"1073741824\"\n", nil, nil})
			}
		}
	}
	return rows
}

// TestUnitKeysCovered fails when a duration or size key is added to the
// config without a row in unitRows.
func TestUnitKeysCovered(t *testing.T) {
	var keys []string
	walkUnits(reflect.TypeFor[Config](), nil, "", func(key string, _ unitKind, _ any) { keys = append(keys, key) })
	var covered []string
	for _, r := range unitRows() {
		covered = append(covered, r.key)
	}
	for _, k := range keys {
		if !slices.Contains(covered, k) {
			t.Errorf("duration or size key %s has no row in unitRows", k)
		}
	}
	for _, k := range covered {
		if !slices.Contains(keys, k) {
			t.Errorf("unitRows has a row for %s, which is not a duration or size key", k)
		}
	}
	if len(keys) < 7 {
		t.Errorf("walk found only %v", keys)
	}
}

func TestUnits(t *testing.T) {
	for _, r := range unitRows() {
		t.Run(r.key, func(t *testing.T) {
			if _, err := Parse(r.bare); err == nil || err.Error() != r.problem {
				t.Errorf("bare number: error = %v\nwant %s", err, r.problem)
			}
			cfg, err := Parse(r.withUnit)
			if err != nil {
				t.Fatalf("with a unit: %v", err)
			}
			if r.get != nil && r.get(cfg) != r.want {
				t.Errorf("with a unit: %v, want %v", r.get(cfg), r.want)
			}
		})
	}
}

func TestUnitsEdgeCases(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"every bare number at once", "[docker]\ncleanup_timeout = 300\n[services]\nwait_timeout = 30\n",
			`docker.cleanup_timeout: 300 has no unit; write "5m"; services.wait_timeout: 30 has no unit; write "30s"`},
		{"fraction", "[cache.gc]\nmax_idle = 1.5\n", `cache.gc.max_idle: 1.5 has no unit; write a duration such as "90s", "12m" or "1h30m"`},
		{"fraction of a size", "[cache.gc]\nbudget = 1.5\n", `cache.gc.budget: 1.5 has no unit; write a size such as "512m" or "1.5g"`},
		{"negative duration", "[services]\nwait_timeout = -5\n", `services.wait_timeout: -5 is not a duration; write one with a unit such as "30s"`},
		{"odd byte count", "[cache.gc]\nbudget = 1048577\n", `cache.gc.budget: 1048577 has no unit; write "1048577b"`},
		{"zero is zero in every unit", "[services]\nwait_timeout = 0\n[cache.gc]\nmax_idle = 0\nbudget = 0\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			if errString(err) != tc.want {
				t.Errorf("error = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
