package cache

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/naming"
)

// Status is what a job found in one cache volume.
type Status struct {
	Volume
	// Warm says the volume was there before the claim: an earlier job
	// made it, and what that job left is in it.
	Warm bool
	// Record is the driver's own record of the volume as the claim found
	// it: its last use and measured size, if any.
	Record record.Record
	// RecordErr is set when the claim could not be recorded in the state
	// directory (no lease: the GC cannot run either without it).
	RecordErr error
	// QuotaLine is for the job log: what the claim did about the
	// volume's quota ("" most often).
	QuotaLine string
}

// SizeKnown says whether Record.SizeBytes is the volume's size: a new
// volume is empty; a warm one is known once measured.
func (s Status) SizeKnown() bool {
	return !s.Warm || !s.Record.Measured.IsZero()
}

// claimVolumes makes sure every volume exists, first leasing each in its
// record (so that no GC removes it between here and the creation of the
// job's containers) and marking it used now. It reports what the records
// said before. The volumes it creates get no quota (see claimLimited).
func (m *Manager) claimVolumes(ctx context.Context, vols []Volume, now time.Time) ([]Status, error) {
	return m.claimLimited(ctx, vols, func(Volume) bool { return false }, now)
}

// claimLimited is claimVolumes where a volume it creates gets a quota
// when cache.quota is set and limited says so for it.
func (m *Manager) claimLimited(ctx context.Context, vols []Volume, limited func(Volume) bool, now time.Time) ([]Status, error) {
	out := make([]Status, len(vols))
	errs := make([]error, len(vols))
	var wg sync.WaitGroup
	for i, v := range vols {
		wg.Go(func() { out[i], errs[i] = m.claimVolume(ctx, v, limited(v), now) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (m *Manager) claimVolume(ctx context.Context, v Volume, limited bool, now time.Time) (Status, error) {
	// The lease comes before the volume is made sure of: a GC that took
	// the lock first has removed the volume by the time the lease is
	// written, and ensureVolume below creates it anew.
	var prev record.Record
	recErr := m.records.Update(v.Name, func(r *record.Record) error {
		prev = *r
		r.Claimed, r.LastUsed = now.UTC(), now.UTC()
		return nil
	})
	limited = limited && m.host != nil // a quota needs the volume's directory here
	existed, quota, err := m.ensureVolume(ctx, v, limited, now)
	if err != nil {
		return Status{}, err
	}
	line, err := m.ensureQuota(ctx, v, !existed, limited, quota)
	if err != nil {
		return Status{}, err
	}
	if quota {
		// Carried with the volume into the job's start sizes: only a
		// quota'd volume has a filesystem to ask about later.
		v.Labels = maps.Clone(v.Labels)
		v.Labels[naming.LabelCacheQuota] = "true"
	}
	st := Status{Volume: v, Warm: existed, Record: prev, RecordErr: recErr, QuotaLine: line}
	if recErr == nil && !existed && !prev.LastUsed.IsZero() {
		// Removed by hand since its last use and made anew: empty, so
		// the record's size no longer holds.
		st.Record = record.Record{}
		st.RecordErr = m.records.Update(v.Name, func(r *record.Record) error {
			r.SizeBytes, r.Measured = 0, time.Time{}
			return nil
		})
	}
	return st, nil
}

// ensureVolume makes sure the cache volume v exists (existed: it did
// before) and is a warmcache cache volume; one it creates is labelled as
// quota'd when limited. quota says the volume carries that label.
func (m *Manager) ensureVolume(ctx context.Context, v Volume, limited bool, now time.Time) (existed, quota bool, err error) {
	info, err := m.engine.InspectVolume(ctx, v.Name)
	existed = err == nil
	if errors.Is(err, engine.ErrNotFound) {
		labels := maps.Clone(v.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[naming.LabelCreated] = now.UTC().Format(time.RFC3339)
		if limited {
			labels[naming.LabelCacheQuota] = strconv.FormatInt(int64(m.cfg.Quota), 10)
		}
		if err := m.engine.EnsureVolume(ctx, engine.VolumeSpec{Name: v.Name, Labels: labels}); err != nil {
			return false, false, fmt.Errorf("cache volume for %s: %w", v.Path, err)
		}
		info, err = m.engine.InspectVolume(ctx, v.Name)
	}
	if err != nil {
		return false, false, fmt.Errorf("cache volume for %s: %w", v.Path, err)
	}
	if info.Labels[naming.LabelKind] != string(naming.KindCache) {
		return false, false, fmt.Errorf("volume %s exists but is not a warmcache cache volume; remove or rename it", v.Name)
	}
	if !existed && m.host != nil {
		// A new volume: let any job user write, whatever uid it runs as.
		if err := m.host.OpenToAllUsers(ctx, v.Name); err != nil && !errors.Is(err, host.ErrNotLocal) {
			return false, false, fmt.Errorf("opening cache volume %s to non-root jobs: %w", v.Name, err)
		}
	}
	return existed, info.Labels[naming.LabelCacheQuota] != "", nil
}

// measureInterval is how long a measured size stands. Measuring walks
// every file of a cache and cleanup runs after every job: size tracking
// must stay cheap with big caches and many jobs, so a size may be this old.
const measureInterval = 10 * time.Minute

// measureVolumes records the current size of each volume in its record,
// unless it was measured less than measureInterval before now. It walks
// the files, so it runs after the job (cleanup), not on the way in; and
// only beside a local engine.
func (m *Manager) measureVolumes(ctx context.Context, vols []Volume, now time.Time) error {
	if m.host == nil {
		return nil
	}
	errs := make([]error, len(vols))
	var wg sync.WaitGroup
	for i, v := range vols {
		wg.Go(func() { errs[i] = m.measureVolume(ctx, v, now) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fresh says whether a size measured at measured still stands at now. A
// time after now is not believed: one far in the future would stop the
// measuring for good.
func fresh(measured, now time.Time) bool {
	age := now.Sub(measured)
	return !measured.IsZero() && age >= 0 && age <= measureInterval
}

func (m *Manager) measureVolume(ctx context.Context, v Volume, now time.Time) error {
	rec, err := m.records.Get(v.Name)
	if err == nil && (rec.LastUsed.IsZero() || fresh(rec.Measured, now)) {
		return nil // never claimed (or evicted), or measured lately
	}
	size, err := m.host.Size(ctx, v.Name)
	if errors.Is(err, engine.ErrNotFound) || errors.Is(err, host.ErrNotLocal) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("measuring %s: %w", v.Name, err)
	}
	return m.records.SetSize(v.Name, size, now)
}
