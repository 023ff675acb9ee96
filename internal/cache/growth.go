package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/human"
	"github.com/warmcache/warmcache/internal/naming"
)

// growthBudget bounds the measuring after a step: it walks the caches on
// the job's time, so a huge cache is reported as not measured instead.
const growthBudget = 3 * time.Second

// startSize is one cache as prepare found it.
type startSize struct {
	Volume Volume `json:"volume"`
	Bytes  int64  `json:"bytes"`
	Known  bool   `json:"known"`
	// Job says the volume is one of the job's own (a layer that goes with
	// the job): it has no record and no metrics series.
	Job bool `json:"job,omitempty"`
	// Quota says the volume is quota'd, and QuotaUsed is its use then, as
	// its filesystem reported it (for the free-space guard).
	Quota     bool  `json:"quota,omitempty"`
	QuotaUsed int64 `json:"quota_used,omitempty"`
}

// sizeAtStart is what prepare knows of the size of a claimed cache.
func sizeAtStart(st Status) startSize {
	return startSize{Volume: st.Volume, Bytes: st.Record.SizeBytes, Known: st.SizeKnown()}
}

// Labels are the labels that carry, on the job's build container, the
// caches' sizes at the start, for ReportGrowth: the run stage is another
// process, and a job's state lives in Docker, where it goes with the job
// and out of the job's reach. base is the container's other labels.
func (c JobCaches) Labels(base map[string]string) map[string]string {
	if len(c.sizes) == 0 {
		return base
	}
	data, err := json.Marshal(c.sizes)
	if err != nil {
		return base // plain structs: cannot fail; the report is simply skipped
	}
	labels := maps.Clone(base)
	labels[naming.LabelCacheSizes] = string(data)
	return labels
}

// startSizes reads back what Labels put on the job's build container.
func (m *Manager) startSizes(ctx context.Context, key naming.JobKey) []startSize {
	rs, err := m.engine.List(ctx, map[string]string{naming.LabelJob: key.Base(), naming.LabelKind: string(naming.KindBuild)})
	if err != nil {
		return nil
	}
	rs = slices.DeleteFunc(rs, func(r engine.Resource) bool { return r.Type != engine.Container })
	if len(rs) == 0 {
		return nil
	}
	var sizes []startSize
	if data := rs[0].Labels[naming.LabelCacheSizes]; data != "" {
		if err := json.Unmarshal([]byte(data), &sizes); err != nil {
			m.log.Warn("reading the cache sizes at the start", zap.Error(err))
		}
	}
	return sizes
}

// ReportGrowth says in the job log, after the job's last step, how much
// each cache grew since prepare, and records the new sizes (so cleanup
// need not walk the caches again). It never fails the stage; beside a
// remote engine it says nothing.
func (m *Manager) ReportGrowth(key naming.JobKey, say Say) {
	if m.host == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), growthBudget)
	defer cancel()
	sizes := m.startSizes(ctx, key)
	if len(sizes) == 0 {
		return // caches off, or a prepare of an older version
	}
	now := time.Now()
	lines := make([]string, len(sizes))
	measured := make([]int64, len(sizes))
	quotas := make([]quotaUse, len(sizes))
	var wg sync.WaitGroup
	for i, s := range sizes {
		wg.Go(func() {
			measured[i] = -1
			size, err := m.host.Size(ctx, s.Volume.Name)
			switch {
			case errors.Is(err, host.ErrNotLocal):
				return // nothing to say
			case errors.Is(err, context.DeadlineExceeded):
				lines[i] = fmt.Sprintf("Cache %s %s: not measured within %s", s.Volume.Profile, s.Volume.Path, growthBudget)
				return
			case err != nil:
				lines[i] = fmt.Sprintf("Cache %s %s: not measured (%v)", s.Volume.Profile, s.Volume.Path, err)
				return
			}
			measured[i] = size
			lines[i] = growthLine(s, size)
			q, ok, err := m.host.Quota(ctx, s.Volume.Name)
			if err == nil && ok && q.Full() {
				lines[i] += "\n" + quotaFullLine(s.Volume, q.Limit)
			}
			quotas[i] = quotaOf(q, ok, err)
			if s.Job {
				return
			}
			if err := m.records.SetSize(s.Volume.Name, size, now); err != nil {
				m.log.Warn("recording a cache size", zap.Error(err))
			}
		})
	}
	wg.Wait()
	for _, l := range lines {
		if l != "" {
			say("%s", l)
		}
	}
	m.updateMetrics(func(st *record.MetricsState) {
		for i, s := range sizes {
			if measured[i] >= 0 && !s.Job {
				st.Sized(s.Volume.Name, s.Volume.Labels, measured[i])
				quotas[i].record(st, s.Volume)
			}
		}
	})
}

// growthLine is the job-log line for a cache of size bytes now.
func growthLine(s startSize, size int64) string {
	head := fmt.Sprintf("Cache %s %s:", s.Volume.Profile, s.Volume.Path)
	switch {
	case !s.Known:
		return fmt.Sprintf("%s %s now (its size at the start was not measured)", head, human.Bytes(size))
	case size > s.Bytes:
		return fmt.Sprintf("%s grew by %s to %s", head, human.Bytes(size-s.Bytes), human.Bytes(size))
	case size < s.Bytes:
		return fmt.Sprintf("%s shrank by %s to %s", head, human.Bytes(s.Bytes-size), human.Bytes(size))
	default:
		return fmt.Sprintf("%s unchanged, %s", head, human.Bytes(size))
	}
}
