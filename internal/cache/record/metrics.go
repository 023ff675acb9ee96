package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/warmcache/warmcache/internal/naming"
)

// Metrics is the Prometheus textfile (for node_exporter's textfile
// collector) that every job updates. Jobs run as separate processes, at
// the same time: the counters live in a JSON file beside the records,
// changed under a lock, and the textfile is rendered from them and
// replaced atomically, so no job's update is lost and no scrape sees half
// a file.
type Metrics struct {
	// Path is the textfile; empty turns metrics off.
	Path string
	// StateDir holds the counters and the lock.
	StateDir string
}

// MetricsState is what the textfile shows.
type MetricsState struct {
	Volumes map[string]*VolumeMetrics `json:"volumes"`
	// Evictions and EvictedBytes count every eviction since the state
	// directory was made.
	Evictions    int64 `json:"evictions"`
	EvictedBytes int64 `json:"evicted_bytes"`
}

// VolumeMetrics are the series of one cache volume.
type VolumeMetrics struct {
	Project   string `json:"project"`
	Profile   string `json:"profile"`
	Path      string `json:"path"`
	Trust     string `json:"trust"`
	Hits      int64  `json:"hits"`
	Misses    int64  `json:"misses"`
	SizeBytes int64  `json:"size_bytes"`
}

// volume returns the series of v, made on first use.
func (s *MetricsState) volume(name string, labels map[string]string) *VolumeMetrics {
	if s.Volumes == nil {
		s.Volumes = map[string]*VolumeMetrics{}
	}
	m := s.Volumes[name]
	if m == nil {
		m = &VolumeMetrics{Project: labels[naming.LabelCacheProjectPath], Profile: labels[naming.LabelCacheProfile], Path: labels[naming.LabelCachePath], Trust: labels[naming.LabelCacheTrust]}
		s.Volumes[name] = m
	}
	return m
}

// Use is one cache volume a job claimed, as the metrics count it.
type Use struct {
	Volume string
	Labels map[string]string
	Warm   bool
	// SizeBytes is the recorded size, when SizeKnown.
	SizeBytes int64
	SizeKnown bool
}

// Claimed counts a hit or a miss for each claimed cache.
func (s *MetricsState) Claimed(uses []Use) {
	for _, u := range uses {
		m := s.volume(u.Volume, u.Labels)
		if u.Warm {
			m.Hits++
		} else {
			m.Misses++
		}
		if u.SizeKnown {
			m.SizeBytes = u.SizeBytes
		}
	}
}

// Sized sets the size of a volume.
func (s *MetricsState) Sized(volume string, labels map[string]string, size int64) {
	s.volume(volume, labels).SizeBytes = size
}

// Evicted counts the eviction of a volume of size bytes and drops its
// series, so that the file does not grow with every volume that ever
// existed.
func (s *MetricsState) Evicted(volume string, bytes int64) {
	s.Evictions++
	s.EvictedBytes += bytes
	delete(s.Volumes, volume)
}

// Update changes the counters with fn and rewrites the textfile. Without
// a Path it does nothing.
func (m Metrics) Update(fn func(*MetricsState)) error {
	if m.Path == "" {
		return nil
	}
	if err := os.MkdirAll(m.StateDir, 0o700); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	unlock, err := lockFile(filepath.Join(m.StateDir, "metrics.lock"))
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer unlock()
	statePath := filepath.Join(m.StateDir, "metrics.json")
	var s MetricsState
	data, err := os.ReadFile(statePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("metrics: %w", err)
	default:
		// A damaged file (a full disk) restarts the counters, as a
		// process restart would; Prometheus handles counter resets.
		_ = json.Unmarshal(data, &s)
	}
	fn(&s)
	if data, err = json.Marshal(s); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := replaceFile(statePath, data, 0o600); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	// node_exporter reads the textfile as its own user.
	if err := replaceFile(m.Path, []byte(s.Text()), 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Text renders the state in the Prometheus text exposition format.
func (s MetricsState) Text() string {
	var b strings.Builder
	names := slices.Sorted(maps.Keys(s.Volumes))
	series := func(name, typ, help string, value func(*VolumeMetrics) int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, v := range names {
			m := s.Volumes[v]
			fmt.Fprintf(&b, "%s{volume=\"%s\",project=\"%s\",profile=\"%s\",path=\"%s\",trust=\"%s\"} %d\n",
				name, labelValue(v), labelValue(m.Project), labelValue(m.Profile), labelValue(m.Path), labelValue(m.Trust), value(m))
		}
	}
	series("warmcache_cache_hits_total", "counter", "Jobs that found the cache volume warm.", func(m *VolumeMetrics) int64 { return m.Hits })
	series("warmcache_cache_misses_total", "counter", "Jobs that found the cache volume cold.", func(m *VolumeMetrics) int64 { return m.Misses })
	series("warmcache_cache_size_bytes", "gauge", "Size of the cache volume when last measured.", func(m *VolumeMetrics) int64 { return m.SizeBytes })
	fmt.Fprintf(&b, "# HELP warmcache_cache_evictions_total Cache volumes evicted by the GC.\n# TYPE warmcache_cache_evictions_total counter\nwarmcache_cache_evictions_total %d\n", s.Evictions)
	fmt.Fprintf(&b, "# HELP warmcache_cache_evicted_bytes_total Bytes of the cache volumes evicted by the GC.\n# TYPE warmcache_cache_evicted_bytes_total counter\nwarmcache_cache_evicted_bytes_total %d\n", s.EvictedBytes)
	return b.String()
}

// labelValue escapes a label value as the exposition format wants.
var labelValue = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace
