package config

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/warmcache/warmcache/internal/limits"
)

// CacheGC are the limits on the disk the cache volumes use. A zero value
// is no limit; with no limit set, no cache is ever evicted.
type CacheGC struct {
	// MaxVolumeSize evicts any one cache volume bigger than this.
	MaxVolumeSize Size `toml:"max_volume_size"`
	// Budget is the total size of all cache volumes in scope (the pool).
	Budget Size `toml:"budget"`
	// MaxIdle evicts caches no job has used for this long.
	MaxIdle time.Duration `toml:"max_idle"`
	// MinFreeDisk evicts least recently used caches while the Docker data
	// root has less than this free.
	MinFreeDisk Size `toml:"min_free_disk"`
	// AtStages runs a light, time-bounded pass in prepare and cleanup
	// when a limit is exceeded.
	AtStages bool `toml:"at_stages"`
}

// Limited says whether any limit is set.
func (g CacheGC) Limited() bool {
	return g.MaxVolumeSize > 0 || g.Budget > 0 || g.MaxIdle > 0 || g.MinFreeDisk > 0
}

// Size is a number of bytes, written in TOML as a string with a unit:
// "512m", "20GiB", "1.5t". Units are binary whatever the spelling ("20GB"
// is 20 GiB), read by limits.MemoryBytes as for every other size in the
// config. A bare number, in TOML or in the string, is refused (units.go):
// `budget = 100` meant 100 GiB, not 100 bytes.
type Size int64

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(text []byte) error {
	n, err := limits.MemoryBytes(string(text))
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// UnmarshalTOML takes a string, or 0; Parse names the key of another
// bare number before the decoder gets here.
func (s *Size) UnmarshalTOML(v any) error {
	if v == int64(0) {
		*s = 0
		return nil
	}
	x, ok := v.(string)
	if !ok {
		return fmt.Errorf("size must be a string with a unit such as \"20g\", not %T", v)
	}
	return s.UnmarshalText([]byte(x))
}

// poolChars are the characters a pool name may use: it is a label value
// and part of a volume name's digest.
func validPool(s string) bool {
	if len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func (c Cache) validateGC() []string {
	var p []string
	if !validPool(c.Pool) {
		p = append(p, fmt.Sprintf("cache.pool: %q must be at most 40 characters of a-z, 0-9, '.', '_' and '-'", c.Pool))
	}
	if !filepath.IsAbs(c.StateDir) {
		p = append(p, fmt.Sprintf("cache.state_dir: %q must be an absolute directory", c.StateDir))
	}
	switch c.Fork {
	case "off", "keep", "discard":
	default:
		p = append(p, fmt.Sprintf("cache.fork: %q is not one of off, keep, discard", c.Fork))
	}
	if c.MetricsFile != "" && !filepath.IsAbs(c.MetricsFile) {
		p = append(p, fmt.Sprintf("cache.metrics_file: %q must be an absolute path", c.MetricsFile))
	}
	if c.GC.MaxIdle < 0 {
		p = append(p, fmt.Sprintf("cache.gc.max_idle: %s must not be negative", c.GC.MaxIdle))
	}
	if c.GC.MaxVolumeSize > 0 && c.GC.Budget > 0 && c.GC.MaxVolumeSize > c.GC.Budget {
		p = append(p, "cache.gc.max_volume_size: must not exceed cache.gc.budget")
	}
	return p
}
