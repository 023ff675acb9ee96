package record

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/warmcache/warmcache/internal/naming"
)

func TestMetricsText(t *testing.T) {
	dir := t.TempDir()
	m := Metrics{Path: filepath.Join(dir, "warmcache.prom"), StateDir: filepath.Join(dir, "state")}
	vols := testVolumes()
	warm := Use{Volume: vols[0].name, Labels: vols[0].labels, Warm: true, SizeBytes: 2048, SizeKnown: true}
	cold := Use{Volume: vols[1].name, Labels: vols[1].labels}
	steps := []func(*MetricsState){
		func(s *MetricsState) { s.Claimed([]Use{warm, cold}) },
		func(s *MetricsState) { s.Claimed([]Use{warm}); s.Sized(vols[1].name, vols[1].labels, 7) },
		func(s *MetricsState) { s.Evicted(vols[1].name, 7) },
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
	labels := `{volume="` + vols[0].name + `",project="group/project",profile="go",path="/go/pkg/mod",trust="unprotected"}`
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
	v := testVolumes()[0]
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := m.Update(func(s *MetricsState) { s.Claimed([]Use{{Volume: v.name, Labels: v.labels, Warm: true}}) }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var hits int64
	if err := m.Update(func(s *MetricsState) { hits = s.Volumes[v.name].Hits }); err != nil {
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

type testVolume struct {
	name   string
	labels map[string]string
}

// testVolumes are two cache volumes of one project, labelled as cache
// volumes are.
func testVolumes() []testVolume {
	labels := func(path string) map[string]string {
		return map[string]string{naming.LabelCacheProjectPath: "group/project", naming.LabelCacheProfile: "go",
			naming.LabelCachePath: path, naming.LabelCacheTrust: "unprotected"}
	}
	return []testVolume{
		{"warmcache-cache-go-mod", labels("/go/pkg/mod")},
		{"warmcache-cache-go-build", labels("/root/.cache/go-build")},
	}
}
