package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/warmcache/warmcache/internal/naming"
)

// Metrics is the Prometheus textfile (for node_exporter's textfile
// collector) that every stage updates. Jobs run as separate processes, at
// the same time: the counters live in a JSON file beside the records,
// changed under a lock, and the textfile is rendered from them and
// replaced atomically and durably, so no job's update is lost and no
// scrape sees half a file.
//
// Labels are bounded: cache series are per profile and trust (protected
// or not), never per volume; PerProject adds the project's path, which
// on a shared runner is as many series as projects.
type Metrics struct {
	// Path is the textfile; empty turns metrics off.
	Path string
	// StateDir holds the counters and the lock.
	StateDir string
	// PerProject adds a project label to the cache series.
	PerProject bool
	// Version is warmcache's, for warmcache_build_info.
	Version string
}

// Stages whose durations are kept as histograms.
const (
	StagePrepare = "prepare" // the whole prepare stage
	StagePull    = "pull"    // the image pulls (or checks) of a prepare
	StageRestore = "restore" // the runner's restore_cache stage
)

// stageBuckets are the histogram bounds, in seconds: a warm prepare takes
// a second or two, a cold pull of a large image minutes.
var stageBuckets = []float64{0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// MetricsState is what the textfile shows.
type MetricsState struct {
	// Volumes are the known cache volumes, for the size gauges; an
	// evicted one is dropped.
	Volumes map[string]*VolumeMetrics `json:"volumes"`
	// Caches are the hit and miss counters, by profile, trust and
	// project; kept when volumes go, so that the counters never go down.
	Caches []*CacheCounts `json:"caches,omitempty"`
	// Evictions and EvictedBytes count every eviction since the state
	// directory was made.
	Evictions    int64 `json:"evictions"`
	EvictedBytes int64 `json:"evicted_bytes"`
	// Stages are the duration histograms by stage name.
	Stages map[string]*Histogram `json:"stages,omitempty"`
	// OOMKills counts processes of job steps the kernel killed for memory.
	OOMKills int64 `json:"oom_kills,omitempty"`
	// Reaped counts resources the reaper removed, by kind (container,
	// volume, network, cgroup).
	Reaped map[string]int64 `json:"reaped,omitempty"`
	// LastGC and LastReap are when a GC pass or a reap pass last ended
	// without an error.
	LastGC   time.Time `json:"last_gc,omitzero"`
	LastReap time.Time `json:"last_reap,omitzero"`
	// Fleet counts the fleet cache's restores and publishes (fleet.go).
	Fleet *FleetCounts `json:"fleet,omitempty"`
}

// VolumeMetrics are the series of one cache volume.
type VolumeMetrics struct {
	Project   string `json:"project"`
	Profile   string `json:"profile"`
	Path      string `json:"path"`
	Trust     string `json:"trust"`
	SizeBytes int64  `json:"size_bytes"`
	// QuotaBytes is the volume's hard limit (cache.quota), 0 for none;
	// QuotaUsedBytes is what its filesystem holds.
	QuotaBytes     int64 `json:"quota_bytes,omitempty"`
	QuotaUsedBytes int64 `json:"quota_used_bytes,omitempty"`
}

// CacheCounts are the hit and miss counters of one label set.
type CacheCounts struct {
	Profile string `json:"profile"`
	Trust   string `json:"trust"`
	Project string `json:"project"`
	Hits    int64  `json:"hits"`
	Misses  int64  `json:"misses"`
}

// Histogram is one stage's durations: Counts[i] is how many fell in
// (stageBuckets[i-1], stageBuckets[i]], the last one above every bound.
type Histogram struct {
	Counts []uint64 `json:"counts"`
	Sum    float64  `json:"sum"`
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

// counts returns the counters of v's label set, made on first use.
func (s *MetricsState) counts(v *VolumeMetrics) *CacheCounts {
	i := slices.IndexFunc(s.Caches, func(c *CacheCounts) bool {
		return c.Profile == v.Profile && c.Trust == v.Trust && c.Project == v.Project
	})
	if i < 0 {
		s.Caches = append(s.Caches, &CacheCounts{Profile: v.Profile, Trust: v.Trust, Project: v.Project})
		i = len(s.Caches) - 1
	}
	return s.Caches[i]
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
		c := s.counts(m)
		if u.Warm {
			c.Hits++
		} else {
			c.Misses++
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

// Quota sets the hard limit of a volume and its use (0, 0: none).
func (s *MetricsState) Quota(volume string, labels map[string]string, limit, used int64) {
	v := s.volume(volume, labels)
	v.QuotaBytes, v.QuotaUsedBytes = limit, used
}

// Evicted counts the eviction of a volume of size bytes and drops its
// series, so that the file does not grow with every volume that ever
// existed.
func (s *MetricsState) Evicted(volume string, bytes int64) {
	s.Evictions++
	s.EvictedBytes += bytes
	delete(s.Volumes, volume)
}

// Observe adds one duration of stage (StagePrepare, StagePull,
// StageRestore) to its histogram.
func (s *MetricsState) Observe(stage string, d time.Duration) {
	if s.Stages == nil {
		s.Stages = map[string]*Histogram{}
	}
	h := s.Stages[stage]
	if h == nil || len(h.Counts) != len(stageBuckets)+1 {
		// New, or kept under other bounds: restart it, as a counter reset.
		h = &Histogram{Counts: make([]uint64, len(stageBuckets)+1)}
		s.Stages[stage] = h
	}
	sec := d.Seconds()
	i, _ := slices.BinarySearch(stageBuckets, sec)
	h.Counts[i]++
	h.Sum += sec
}

// OOMKilled counts n processes killed for memory during a job's step.
func (s *MetricsState) OOMKilled(n int64) {
	s.OOMKills += n
}

// ReapedResources counts n resources of kind (container, volume,
// network, cgroup) that the reaper removed.
func (s *MetricsState) ReapedResources(kind string, n int64) {
	if n == 0 {
		return
	}
	if s.Reaped == nil {
		s.Reaped = map[string]int64{}
	}
	s.Reaped[kind] += n
}

// GCSucceeded and ReapSucceeded say that a pass ended without an error at now.
func (s *MetricsState) GCSucceeded(now time.Time)   { s.LastGC = now.UTC() }
func (s *MetricsState) ReapSucceeded(now time.Time) { s.LastReap = now.UTC() }

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
	text, err := m.Text(s)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	// node_exporter reads the textfile as its own user.
	if err := replaceFile(m.Path, text, 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Text renders the state in the Prometheus text exposition format (see
// exposition.go).
func (m Metrics) Text(s MetricsState) ([]byte, error) {
	var b bytes.Buffer
	if err := writeText(&b, m, s, runtime.Version()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
