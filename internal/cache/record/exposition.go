package record

import (
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The series of the textfile, named as the Prometheus naming guide asks:
// the warmcache_ prefix, base units (seconds, bytes), _total on counters,
// _timestamp_seconds on times, _info on the build's constant series.
var (
	buildInfo = prometheus.NewDesc("warmcache_build_info",
		"warmcache's version and the Go version it was built with; always 1.", []string{"version", "goversion"}, nil)
	stageDuration = prometheus.NewDesc("warmcache_stage_duration_seconds",
		"Duration of job stages: prepare (the whole stage), pull (its image pulls or checks), restore (the runner's restore_cache).", []string{"stage"}, nil)
	oomKills = prometheus.NewDesc("warmcache_oom_kills_total",
		"Processes of job steps the kernel killed for memory.", nil, nil)
	reaped = prometheus.NewDesc("warmcache_reaped_resources_total",
		"Resources of abandoned jobs the reaper removed, by kind.", []string{"kind"}, nil)
	lastGC = prometheus.NewDesc("warmcache_cache_gc_last_success_timestamp_seconds",
		"When a cache GC pass last ended without an error (Unix time).", nil, nil)
	lastReap = prometheus.NewDesc("warmcache_reap_last_success_timestamp_seconds",
		"When a reap pass last ended without an error (Unix time).", nil, nil)
	evictions = prometheus.NewDesc("warmcache_cache_evictions_total",
		"Cache volumes evicted by the GC.", nil, nil)
	evictedBytes = prometheus.NewDesc("warmcache_cache_evicted_bytes_total",
		"Bytes of the cache volumes evicted by the GC.", nil, nil)
)

// cacheLabels are the labels of the cache series, which depend on
// PerProject.
func cacheLabels(perProject bool) []string {
	labels := []string{"profile", "trust"}
	if perProject {
		labels = append(labels, "project")
	}
	return labels
}

// cacheDescs are the cache series.
func cacheDescs(perProject bool) (hits, misses, size, volumes *prometheus.Desc) {
	labels := cacheLabels(perProject)
	return prometheus.NewDesc("warmcache_cache_hits_total", "Jobs that found a cache warm.", labels, nil),
		prometheus.NewDesc("warmcache_cache_misses_total", "Jobs that found a cache cold.", labels, nil),
		prometheus.NewDesc("warmcache_cache_size_bytes", "Size of the cache volumes when last measured.", labels, nil),
		prometheus.NewDesc("warmcache_cache_volumes", "Cache volumes known to the metrics.", labels, nil)
}

// quotaDescs are the quota series, of the label sets with a quota'd
// volume only: none at all without cache.quota.
func quotaDescs(perProject bool) (quota, used *prometheus.Desc) {
	labels := cacheLabels(perProject)
	return prometheus.NewDesc("warmcache_cache_quota_bytes", "Hard size limits (cache.quota) of the quota'd cache volumes.", labels, nil),
		prometheus.NewDesc("warmcache_cache_quota_used_bytes", "Space used in the filesystems of the quota'd cache volumes when last measured.", labels, nil)
}

// collector presents a MetricsState to a registry as constant metrics:
// the registry checks names, labels and their consistency, and expfmt
// writes the format, escaping included.
type collector struct {
	m         Metrics
	s         MetricsState
	goVersion string
}

// Describe implements prometheus.Collector: unchecked, as the cache
// series' labels depend on the config.
func (c collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ch <- prometheus.MustNewConstMetric(buildInfo, prometheus.GaugeValue, 1, c.m.Version, c.goVersion)

	hits, misses, size, volumes := cacheDescs(c.m.PerProject)
	key := func(profile, trust, project string) []string {
		if c.m.PerProject {
			return []string{profile, trust, project}
		}
		return []string{profile, trust}
	}
	quota, quotaUsed := quotaDescs(c.m.PerProject)
	type sum struct {
		hits, misses, size, volumes float64
		quota, quotaUsed            float64
		quotaVolumes                int
	}
	sums := map[string]*sum{}
	at := func(labels []string) *sum {
		k := strings.Join(labels, "\x00")
		if sums[k] == nil {
			sums[k] = &sum{}
		}
		return sums[k]
	}
	for _, cc := range s.Caches {
		x := at(key(cc.Profile, cc.Trust, cc.Project))
		x.hits += float64(cc.Hits)
		x.misses += float64(cc.Misses)
	}
	for _, v := range s.Volumes {
		x := at(key(v.Profile, v.Trust, v.Project))
		x.size += float64(v.SizeBytes)
		x.volumes++
		if v.QuotaBytes > 0 {
			x.quota += float64(v.QuotaBytes)
			x.quotaUsed += float64(v.QuotaUsedBytes)
			x.quotaVolumes++
		}
	}
	for _, k := range slices.Sorted(maps.Keys(sums)) {
		labels, x := strings.Split(k, "\x00"), sums[k]
		ch <- prometheus.MustNewConstMetric(hits, prometheus.CounterValue, x.hits, labels...)
		ch <- prometheus.MustNewConstMetric(misses, prometheus.CounterValue, x.misses, labels...)
		ch <- prometheus.MustNewConstMetric(size, prometheus.GaugeValue, x.size, labels...)
		ch <- prometheus.MustNewConstMetric(volumes, prometheus.GaugeValue, x.volumes, labels...)
		if x.quotaVolumes > 0 {
			ch <- prometheus.MustNewConstMetric(quota, prometheus.GaugeValue, x.quota, labels...)
			ch <- prometheus.MustNewConstMetric(quotaUsed, prometheus.GaugeValue, x.quotaUsed, labels...)
		}
	}
	ch <- prometheus.MustNewConstMetric(evictions, prometheus.CounterValue, float64(s.Evictions))
	ch <- prometheus.MustNewConstMetric(evictedBytes, prometheus.CounterValue, float64(s.EvictedBytes))

	for _, stage := range []string{StagePrepare, StagePull, StageRestore} {
		h := s.Stages[stage]
		if h == nil {
			h = &Histogram{Counts: make([]uint64, len(stageBuckets)+1)}
		}
		buckets := map[float64]uint64{}
		var cum uint64
		for i, bound := range stageBuckets {
			cum += h.Counts[i]
			buckets[bound] = cum
		}
		cum += h.Counts[len(stageBuckets)]
		ch <- prometheus.MustNewConstHistogram(stageDuration, cum, h.Sum, buckets, stage)
	}
	ch <- prometheus.MustNewConstMetric(oomKills, prometheus.CounterValue, float64(s.OOMKills))
	collectFleet(ch, s.Fleet)
	for _, kind := range []string{"container", "volume", "network", "cgroup"} {
		ch <- prometheus.MustNewConstMetric(reaped, prometheus.CounterValue, float64(s.Reaped[kind]), kind)
	}
	// A time never reached is left out rather than shown as 1970.
	if !s.LastGC.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastGC, prometheus.GaugeValue, float64(s.LastGC.Unix()))
	}
	if !s.LastReap.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastReap, prometheus.GaugeValue, float64(s.LastReap.Unix()))
	}
}

// writeText writes the state in the text exposition format, families
// sorted by name as the registry gathers them.
func writeText(w io.Writer, m Metrics, s MetricsState, goVersion string) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(collector{m: m, s: s, goVersion: goVersion}); err != nil {
		return err
	}
	families, err := reg.Gather()
	if err != nil {
		return err
	}
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(w, f); err != nil {
			return err
		}
	}
	return nil
}
