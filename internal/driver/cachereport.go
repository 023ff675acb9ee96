package driver

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// sizesLabel carries, on the job's build container, the cache sizes
// prepare found, for the growth report after the steps: the run stage is
// another process, and a job's state lives in Docker, where it goes with
// the job and out of the job's reach.
const sizesLabel = naming.LabelPrefix + "cache-sizes"

// growthBudget bounds the measuring after a step: it walks the caches on
// the job's time, so a huge cache is reported as not measured instead.
const growthBudget = 3 * time.Second

// startSize is one cache as prepare found it.
type startSize struct {
	Volume cache.Volume `json:"volume"`
	Bytes  int64        `json:"bytes"`
	Known  bool         `json:"known"`
	// Job says the volume is one of the job's own (a layer that goes with
	// the job): it has no record and no metrics series.
	Job bool `json:"job,omitempty"`
}

func cacheMetrics(d Deps) cache.Metrics {
	return cache.Metrics{Path: d.Config.Cache.MetricsFile, StateDir: d.Config.Cache.StateDir}
}

// sizeAtStart is what prepare knows of the size of a claimed cache.
func sizeAtStart(st cache.Status) startSize {
	known := st.Readable && (!st.Warm || !st.Stamp.Measured.IsZero())
	return startSize{Volume: st.Volume, Bytes: st.Stamp.SizeBytes, Known: known}
}

// recordClaims counts the hits and misses of the caches the job uses in
// the metrics file; it never fails the job.
func recordClaims(d Deps, uses []cache.Status) {
	if err := cacheMetrics(d).Update(func(m *cache.MetricsState) { m.Claimed(uses) }); err != nil {
		d.Log.Warn("updating the metrics file", zap.Error(err))
	}
}

// withSizes labels the build container spec with the caches' sizes at
// the start, for reportCacheGrowth.
func withSizes(c engine.ContainerSpec, sizes []startSize) engine.ContainerSpec {
	if len(sizes) == 0 {
		return c
	}
	data, err := json.Marshal(sizes)
	if err != nil {
		return c // plain structs: cannot fail; the report is simply skipped
	}
	labels := maps.Clone(c.Labels)
	labels[sizesLabel] = string(data)
	c.Labels = labels
	return c
}

// startSizes reads back what withSizes put on the job's build container.
func startSizes(ctx context.Context, d Deps, key naming.JobKey) []startSize {
	rs, err := d.Engine.List(ctx, map[string]string{naming.LabelJob: key.Base(), naming.LabelKind: string(naming.KindBuild)})
	if err != nil {
		return nil
	}
	rs = slices.DeleteFunc(rs, func(r engine.Resource) bool { return r.Type != engine.Container })
	if len(rs) == 0 {
		return nil
	}
	var sizes []startSize
	if data := rs[0].Labels[sizesLabel]; data != "" {
		if err := json.Unmarshal([]byte(data), &sizes); err != nil {
			d.Log.Warn("reading the cache sizes at the start", zap.Error(err))
		}
	}
	return sizes
}

// reportCacheGrowth says in the job log, after a step, how much each cache
// grew since prepare, and records the new sizes (so cleanup need not walk
// the caches again). It never fails the stage.
func reportCacheGrowth(d Deps, key naming.JobKey, stage string) {
	if !protocol.IsStep(stage) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), growthBudget)
	defer cancel()
	sizes := startSizes(ctx, d, key)
	if len(sizes) == 0 {
		return // caches off, or a prepare of an older version
	}
	now := time.Now()
	lines := make([]string, len(sizes))
	measured := make([]int64, len(sizes))
	var wg sync.WaitGroup
	for i, s := range sizes {
		wg.Go(func() {
			measured[i] = -1
			info, err := d.Engine.InspectVolume(ctx, s.Volume.Name)
			if err != nil {
				lines[i] = fmt.Sprintf("Cache %s %s: not measured (%v)", s.Volume.Profile, s.Volume.Path, err)
				return
			}
			if _, err := os.Stat(info.Mountpoint); err != nil {
				return // a remote engine: nothing to say
			}
			size, err := cache.DirSize(ctx, info.Mountpoint)
			if err != nil {
				lines[i] = fmt.Sprintf("Cache %s %s: not measured within %s", s.Volume.Profile, s.Volume.Path, growthBudget)
				return
			}
			measured[i] = size
			lines[i] = growthLine(s, size)
			if s.Job {
				return
			}
			if err := cacheRecords(d).SetSize(s.Volume.Name, size, now); err != nil {
				d.Log.Warn("recording a cache size", zap.Error(err))
			}
		})
	}
	wg.Wait()
	for _, l := range lines {
		if l != "" {
			d.say("%s", l)
		}
	}
	err := cacheMetrics(d).Update(func(m *cache.MetricsState) {
		for i, s := range sizes {
			if measured[i] >= 0 && !s.Job {
				m.Sized(s.Volume, measured[i])
			}
		}
	})
	if err != nil {
		d.Log.Warn("updating the metrics file", zap.Error(err))
	}
}

// growthLine is the job-log line for a cache of size bytes now.
func growthLine(s startSize, size int64) string {
	head := fmt.Sprintf("Cache %s %s:", s.Volume.Profile, s.Volume.Path)
	switch {
	case !s.Known:
		return fmt.Sprintf("%s %s now (its size at the start was not measured)", head, cache.Bytes(size))
	case size > s.Bytes:
		return fmt.Sprintf("%s grew by %s to %s", head, cache.Bytes(size-s.Bytes), cache.Bytes(size))
	case size < s.Bytes:
		return fmt.Sprintf("%s shrank by %s to %s", head, cache.Bytes(s.Bytes-size), cache.Bytes(size))
	default:
		return fmt.Sprintf("%s unchanged, %s", head, cache.Bytes(size))
	}
}

// recordSizes puts the recorded sizes of vols in the metrics file.
func recordSizes(d Deps, vols []cache.Volume) {
	err := cacheMetrics(d).Update(func(m *cache.MetricsState) {
		for _, v := range vols {
			if r, err := cacheRecords(d).Get(v.Name); err == nil && !r.Measured.IsZero() {
				m.Sized(v, r.SizeBytes)
			}
		}
	})
	if err != nil {
		d.Log.Warn("updating the metrics file", zap.Error(err))
	}
}
