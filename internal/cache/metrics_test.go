package cache

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestMetricsText(t *testing.T) {
	dir := t.TempDir()
	m := Metrics{Path: filepath.Join(dir, "warmcache.prom"), StateDir: filepath.Join(dir, "state")}
	vols := Plan(testKey, []Profile{wantGo})
	warm := Status{Volume: vols[0], Warm: true, Readable: true, Stamp: Stamp{SizeBytes: 2048, Measured: t0}}
	cold := Status{Volume: vols[1], Readable: true}
	steps := []func(*MetricsState){
		func(s *MetricsState) { s.Claimed([]Status{warm, cold}) },
		func(s *MetricsState) { s.Claimed([]Status{warm}); s.Sized(vols[1], 7) },
		func(s *MetricsState) { s.Evicted([]Eviction{{Volume: vols[1].Name, SizeBytes: 7}}) },
	}
	for _, fn := range steps {
		if err := m.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	labels := `{volume="` + vols[0].Name + `",project="group/project",profile="go",path="/go/pkg/mod",trust="unprotected"}`
	want := "# HELP warmcache_cache_hits_total Jobs that found the cache volume warm.\n# TYPE warmcache_cache_hits_total counter\n" +
		"warmcache_cache_hits_total" + labels + " 2\n" +
		"# HELP warmcache_cache_misses_total Jobs that found the cache volume cold.\n# TYPE warmcache_cache_misses_total counter\n" +
		"warmcache_cache_misses_total" + labels + " 0\n" +
		"# HELP warmcache_cache_size_bytes Size of the cache volume when last measured.\n# TYPE warmcache_cache_size_bytes gauge\n" +
		"warmcache_cache_size_bytes" + labels + " 2048\n" +
		"# HELP warmcache_cache_evictions_total Cache volumes evicted by the GC.\n# TYPE warmcache_cache_evictions_total counter\nwarmcache_cache_evictions_total 1\n" +
		"# HELP warmcache_cache_evicted_bytes_total Bytes of the cache volumes evicted by the GC.\n# TYPE warmcache_cache_evicted_bytes_total counter\nwarmcache_cache_evicted_bytes_total 7\n"
	if string(got) != want {
		t.Errorf("textfile:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(m.Path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("textfile mode: %v, %v; want 0644 for node_exporter", fi, err)
	}
}

// TestMetricsConcurrentJobs: jobs updating at once lose no count.
func TestMetricsConcurrentJobs(t *testing.T) {
	dir := t.TempDir()
	m := Metrics{Path: filepath.Join(dir, "warmcache.prom"), StateDir: dir}
	v := Plan(testKey, []Profile{wantGo})[0]
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := m.Update(func(s *MetricsState) { s.Claimed([]Status{{Volume: v, Warm: true}}) }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var hits int64
	if err := m.Update(func(s *MetricsState) { hits = s.Volumes[v.Name].Hits }); err != nil {
		t.Fatal(err)
	}
	if hits != 20 {
		t.Errorf("hits = %d after 20 concurrent updates, want 20", hits)
	}
}

func TestMetricsOff(t *testing.T) {
	called := false
	if err := (Metrics{StateDir: t.TempDir()}).Update(func(*MetricsState) { called = true }); err != nil || called {
		t.Errorf("Update without a path: %v, called %v; want nothing done", err, called)
	}
}
