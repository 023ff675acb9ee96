package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/cache/growth"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// TestGuard: under the floor, the guard stops the job once a cache grew
// by growth.MinGrowth since prepare, or, for a cache not measured then,
// since its first measure; not before, and not above the floor.
func TestGuard(t *testing.T) {
	f, root := localEngine(t)
	f.SetInfo(engine.Info{RootDir: root})
	f.AddImage("img")
	cfg := config.Cache{Enabled: true, GC: config.CacheGC{MinFreeDisk: 1 << 60}}
	m := newManager(t, f, cfg, true)
	vols := goVolumes()
	if _, err := m.claimVolumes(t.Context(), vols, t0); err != nil {
		t.Fatal(err)
	}
	mod, build := filepath.Join(root, vols[0].Name), filepath.Join(root, vols[1].Name)
	writeFile(t, filepath.Join(mod, "old"), 1000)
	writeFile(t, filepath.Join(build, "old"), 1000)
	key := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 1}
	caches := JobCaches{sizes: []growth.Start{{Volume: vols[0], Bytes: 1000, Known: true}, {Volume: vols[1]}}}
	if err := f.CreateContainer(t.Context(), engine.ContainerSpec{Name: key.Name(naming.KindBuild), Image: "img",
		Labels: caches.Labels(key.Labels(naming.KindBuild, naming.JobMeta{}))}); err != nil {
		t.Fatal(err)
	}
	g := m.Guard(t.Context(), key)
	if g == nil {
		t.Fatal("no guard")
	}
	check := func(want string) {
		t.Helper()
		line, stop := g.Check(t.Context())
		if stop != (want != "") || !strings.Contains(line, want) {
			t.Errorf("Check = %q, %v; want a line with %q", line, stop, want)
		}
	}
	// The go-build cache, not measured at prepare, grew before the
	// guard's first measure: not counted.
	grow(t, filepath.Join(build, "big"), 1<<30)
	check("")
	grow(t, filepath.Join(mod, "almost"), growth.MinGrowth-1000)
	check("")
	grow(t, filepath.Join(mod, "more"), 1000)
	grow(t, filepath.Join(build, "bigger"), 100<<20)
	check("under cache.gc.min_free_disk (1048576 TiB), and this job's caches go /go/pkg/mod grew by 64.0 MiB, go /root/.cache/go-build grew by 100.0 MiB")

	// Above the floor, whatever the caches did.
	m.cfg.GC.MinFreeDisk = 1
	g = m.Guard(t.Context(), key)
	check("")

	for name, cfg := range map[string]config.Cache{
		"no floor":   {Enabled: true},
		"caches off": {GC: config.CacheGC{MinFreeDisk: 1 << 60}},
	} {
		if g := newManager(t, f, cfg, true).Guard(t.Context(), key); g != nil {
			t.Errorf("%s: a guard", name)
		}
	}
	if g := newManager(t, f, cfg, false).Guard(t.Context(), key); g != nil {
		t.Error("a guard beside a remote engine")
	}
	other := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 2}
	if g := m.Guard(t.Context(), other); g != nil {
		t.Error("a guard for a job without caches")
	}
}

// grow makes a sparse file of size bytes at path: a cache's growth as the
// walk counts it, without taking the disk.
func grow(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
