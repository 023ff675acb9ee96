package config

// CacheMetrics are the [cache] keys of the metrics textfile besides
// metrics_file.
type CacheMetrics struct {
	// MetricsPerProject adds a project label to the cache series
	// (hits, misses, sizes). Off, they are per profile and trust only, so
	// that a shared runner's series do not grow with its projects.
	MetricsPerProject bool `toml:"metrics_per_project"`
}
