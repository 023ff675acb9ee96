package remote

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// Inspector is what PublishVolumes needs from the engine: a volume's labels.
type Inspector interface {
	InspectVolume(ctx context.Context, name string) (engine.VolumeInfo, error)
}

// PublishVolumes publishes, after a successful job of trust class trust,
// a snapshot of each of the named cache volumes that cache.remote.publish
// and min_interval call for and that changed since this host last
// published it (records, the caches' own records, say when and at what
// size). It runs off the job's critical path (a detached process started
// by the run stage that ended the job's steps), bounded by
// PublishTimeout. Volumes of another trust class, the git checkout and
// anything not a cache volume are left alone. Each failure is logged and
// the others still published.
// Each publish is counted in metrics (cache.metrics_file).
func (t *Tier) PublishVolumes(ctx context.Context, e Inspector, records record.Records, metrics record.Metrics, trust string, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, PublishTimeout)
	defer cancel()
	var errs []error
	for _, name := range names {
		if err := t.publishVolume(ctx, e, records, metrics, trust, name); err != nil {
			t.log.Warn("publishing a cache to the fleet cache", zap.String("volume", name), zap.Error(err))
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t *Tier) publishVolume(ctx context.Context, e Inspector, records record.Records, metrics record.Metrics, trust, name string) error {
	info, err := e.InspectVolume(ctx, name)
	if err != nil {
		return err
	}
	l := info.Labels
	if l[naming.LabelKind] != string(naming.KindCache) || l[naming.LabelCacheTrust] != trust || l[naming.LabelCacheProfile] == "git" {
		return nil
	}
	size, err := t.volumes.Size(ctx, name)
	if err != nil {
		return err
	}
	// Decided and reserved under the record's lock: two jobs ending at
	// once publish the cache once.
	now := time.Now().UTC()
	var prev record.Record
	publish := false
	if err := records.Update(name, func(r *record.Record) error {
		prev = *r
		if publish = t.ShouldPublish(trust, size, r.Published, r.PublishedBytes, now); publish {
			r.Published = now
		}
		return nil
	}); err != nil || !publish {
		return err
	}
	start := time.Now()
	n, err := t.Publish(ctx, Volume{Name: name, Profile: l[naming.LabelCacheProfile], Path: l[naming.LabelCachePath], Labels: l}, size)
	if uerr := records.Update(name, func(r *record.Record) error {
		if err != nil {
			r.Published = prev.Published // failed: the next job may try again
		} else {
			r.PublishedBytes = size
		}
		return nil
	}); uerr != nil && err == nil {
		err = uerr
	}
	if merr := metrics.Update(func(s *record.MetricsState) { s.FleetPublished(err == nil, size, time.Since(start)) }); merr != nil {
		t.log.Warn("updating the metrics file", zap.Error(merr))
	}
	if err == nil {
		t.log.Info("published a cache snapshot to the fleet cache", zap.String("volume", name),
			zap.Int64("content_bytes", size), zap.Int64("snapshot_bytes", n), zap.Duration("took", time.Since(start)))
	}
	return err
}
