package record

import (
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/naming"
)

func TestMetricsText(t *testing.T) {
	dir := t.TempDir()
	m := Metrics{Path: filepath.Join(dir, "warmcache.prom"), StateDir: filepath.Join(dir, "state"), Version: "1.2.3"}
	vols := testVolumes()
	warm := Use{Volume: vols[0].name, Labels: vols[0].labels, Warm: true, SizeBytes: 2048, SizeKnown: true}
	cold := Use{Volume: vols[1].name, Labels: vols[1].labels}
	other := Use{Volume: "warmcache-cache-npm", Labels: map[string]string{naming.LabelCacheProjectPath: "other/\"quoted\"", naming.LabelCacheProfile: "npm",
		naming.LabelCachePath: "/root/.npm", naming.LabelCacheTrust: "protected"}, Warm: true, SizeBytes: 10, SizeKnown: true}
	gcAt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	steps := []func(*MetricsState){
		func(s *MetricsState) { s.Claimed([]Use{warm, cold}) },
		func(s *MetricsState) {
			s.Claimed([]Use{warm, other})
			s.Sized(vols[1].name, vols[1].labels, 7)
			// Summed per label set; none for the npm cache, with none.
			s.Quota(vols[0].name, vols[0].labels, 100<<20, 2<<20)
			s.Quota(vols[1].name, vols[1].labels, 100<<20, 1<<20) // evicted next
			s.Quota("warmcache-cache-go-mod-slot1", vols[0].labels, 50<<20, 3<<20)
			s.Quota(other.Volume, other.Labels, 0, 0)
		},
		func(s *MetricsState) { s.Evicted(vols[1].name, 7); s.GCSucceeded(gcAt) },
		func(s *MetricsState) {
			s.Observe(StagePrepare, 1500*time.Millisecond)
			s.Observe(StagePrepare, 700*time.Second)
			s.Observe(StagePull, time.Second) // on a bound: in its bucket
			s.OOMKilled(2)
			s.ReapedResources("container", 3)
			s.ReapedResources("network", 1)
		},
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
	want := readGolden(t, "metrics.golden", strings.ReplaceAll(string(got), runtime.Version(), "GOVERSION"))
	if strings.ReplaceAll(string(got), runtime.Version(), "GOVERSION") != want {
		t.Errorf("textfile:\n%s\nwant (testdata/metrics.golden):\n%s", got, want)
	}
	if fi, err := os.Stat(m.Path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("textfile mode: %v, %v; want 0644 for node_exporter", fi, err)
	}
	// No volume and no path label by default; the project only when asked.
	for _, label := range []string{"volume=", "path=", "project="} {
		if strings.Contains(string(got), label) {
			t.Errorf("default textfile has the unbounded label %s", label)
		}
	}
	m.PerProject = true
	if err := m.Update(func(*MetricsState) {}); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(m.Path)
	for _, line := range []string{
		`warmcache_cache_hits_total{profile="go",project="group/project",trust="unprotected"} 2`,
		`warmcache_cache_hits_total{profile="npm",project="other/\"quoted\"",trust="protected"} 1`,
		`warmcache_cache_misses_total{profile="go",project="group/project",trust="unprotected"} 1`,
	} {
		if !strings.Contains(string(got), line+"\n") {
			t.Errorf("per-project textfile lacks %s:\n%s", line, got)
		}
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
	if err := m.Update(func(s *MetricsState) { hits = s.Caches[0].Hits }); err != nil {
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

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// readGolden returns testdata/name, rewritten with got under -update.
func readGolden(t *testing.T, name, got string) string {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(want)
}
