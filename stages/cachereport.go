package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/cachevol"
)

// sizesFile keeps, in the runner's temp dir of the job (on the runner host,
// out of the job's reach, gone with the job), the cache sizes prepare
// found, for the growth report after the steps.
const sizesFile = "warmcache-cache-sizes.json"

// growthBudget bounds the measuring after a step: it walks the caches on
// the job's time, so a huge cache is reported as not measured instead.
const growthBudget = 3 * time.Second

// startSize is one cache as prepare found it.
type startSize struct {
	Volume cachevol.Volume `json:"volume"`
	Bytes  int64           `json:"bytes"`
	Known  bool            `json:"known"`
	// Job says the volume is one of the job's own (a layer that goes with
	// the job): it has no record and no metrics series.
	Job bool `json:"job,omitempty"`
}

func cacheMetrics(d Deps) cachevol.Metrics {
	return cachevol.Metrics{Path: d.Config.Cache.MetricsFile, StateDir: d.Config.Cache.StateDir}
}

// sizeAtStart is what prepare knows of the size of a claimed cache.
func sizeAtStart(st cachevol.Status) startSize {
	known := st.Readable && (!st.Warm || !st.Stamp.Measured.IsZero())
	return startSize{Volume: st.Volume, Bytes: st.Stamp.SizeBytes, Known: known}
}

// recordClaims counts the hits and misses of the caches the job uses in
// the metrics file and keeps the sizes of the volumes it writes to for the
// growth report. Neither ever fails the job.
func recordClaims(d Deps, uses []cachevol.Status, sizes []startSize) {
	if err := cacheMetrics(d).Update(func(m *cachevol.MetricsState) { m.Claimed(uses) }); err != nil {
		d.Log.Warn("updating the metrics file", zap.Error(err))
	}
	dir := d.Getenv("TMPDIR")
	if dir == "" {
		return
	}
	data, err := json.Marshal(sizes)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, sizesFile), data, 0o600)
	}
	if err != nil {
		d.Log.Warn("keeping the cache sizes for the growth report", zap.Error(err))
	}
}

// isStep says whether a run stage is one of the job's steps.
func isStep(stage string) bool {
	return stage == "build_script" || strings.HasPrefix(stage, "step_")
}

// reportCacheGrowth says in the job log, after a step, how much each cache
// grew since prepare, and records the new sizes (so cleanup need not walk
// the caches again). It never fails the stage.
func reportCacheGrowth(d Deps, stage string) {
	if !isStep(stage) || d.Getenv("TMPDIR") == "" {
		return
	}
	data, err := os.ReadFile(filepath.Join(d.Getenv("TMPDIR"), sizesFile))
	if err != nil {
		return // caches off, or a prepare of an older version
	}
	var sizes []startSize
	if err := json.Unmarshal(data, &sizes); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), growthBudget)
	defer cancel()
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
			size, err := cachevol.DirSize(ctx, info.Mountpoint)
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
	err = cacheMetrics(d).Update(func(m *cachevol.MetricsState) {
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
		return fmt.Sprintf("%s %s now (its size at the start was not measured)", head, cachevol.Bytes(size))
	case size > s.Bytes:
		return fmt.Sprintf("%s grew by %s to %s", head, cachevol.Bytes(size-s.Bytes), cachevol.Bytes(size))
	case size < s.Bytes:
		return fmt.Sprintf("%s shrank by %s to %s", head, cachevol.Bytes(s.Bytes-size), cachevol.Bytes(size))
	default:
		return fmt.Sprintf("%s unchanged, %s", head, cachevol.Bytes(size))
	}
}

// recordSizes puts the recorded sizes of vols in the metrics file.
func recordSizes(d Deps, vols []cachevol.Volume) {
	err := cacheMetrics(d).Update(func(m *cachevol.MetricsState) {
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
