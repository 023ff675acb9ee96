package record

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FleetCounts count the fleet cache's work (cache.remote): restores into
// caches new on this host and publishes after successful jobs, each with
// its failures, bytes (of cache content) and seconds.
type FleetCounts struct {
	Restores        int64   `json:"restores"`
	RestoreFailures int64   `json:"restore_failures"`
	RestoredBytes   int64   `json:"restored_bytes"`
	RestoreSeconds  float64 `json:"restore_seconds"`
	Publishes       int64   `json:"publishes"`
	PublishFailures int64   `json:"publish_failures"`
	PublishedBytes  int64   `json:"published_bytes"`
	PublishSeconds  float64 `json:"publish_seconds"`
}

// FleetRestored counts one restore: ok, or failed (the cache cold).
func (s *MetricsState) FleetRestored(ok bool, bytes int64, d time.Duration) {
	f := s.fleet()
	if !ok {
		f.RestoreFailures++
		return
	}
	f.Restores++
	f.RestoredBytes += bytes
	f.RestoreSeconds += d.Seconds()
}

// FleetPublished counts one publish: ok, or failed.
func (s *MetricsState) FleetPublished(ok bool, bytes int64, d time.Duration) {
	f := s.fleet()
	if !ok {
		f.PublishFailures++
		return
	}
	f.Publishes++
	f.PublishedBytes += bytes
	f.PublishSeconds += d.Seconds()
}

func (s *MetricsState) fleet() *FleetCounts {
	if s.Fleet == nil {
		s.Fleet = &FleetCounts{}
	}
	return s.Fleet
}

var (
	fleetRestores = prometheus.NewDesc("warmcache_fleet_cache_restores_total",
		"Caches new on this host restored from the fleet cache (result ok), or left cold by a failure (result failed).", []string{"result"}, nil)
	fleetRestoredBytes = prometheus.NewDesc("warmcache_fleet_cache_restored_bytes_total",
		"Bytes of cache content restored from the fleet cache.", nil, nil)
	fleetRestoreSeconds = prometheus.NewDesc("warmcache_fleet_cache_restore_seconds_total",
		"Time spent restoring caches from the fleet cache.", nil, nil)
	fleetPublishes = prometheus.NewDesc("warmcache_fleet_cache_publishes_total",
		"Snapshots published to the fleet cache, by result (ok, failed).", []string{"result"}, nil)
	fleetPublishedBytes = prometheus.NewDesc("warmcache_fleet_cache_published_bytes_total",
		"Bytes of cache content published to the fleet cache.", nil, nil)
	fleetPublishSeconds = prometheus.NewDesc("warmcache_fleet_cache_publish_seconds_total",
		"Time spent publishing to the fleet cache (off the jobs' critical path).", nil, nil)
)

// collectFleet sends the fleet cache's series, once it has done anything.
func collectFleet(ch chan<- prometheus.Metric, f *FleetCounts) {
	if f == nil {
		return
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	counter(fleetRestores, float64(f.Restores), "ok")
	counter(fleetRestores, float64(f.RestoreFailures), "failed")
	counter(fleetRestoredBytes, float64(f.RestoredBytes))
	counter(fleetRestoreSeconds, f.RestoreSeconds)
	counter(fleetPublishes, float64(f.Publishes), "ok")
	counter(fleetPublishes, float64(f.PublishFailures), "failed")
	counter(fleetPublishedBytes, float64(f.PublishedBytes))
	counter(fleetPublishSeconds, f.PublishSeconds)
}
