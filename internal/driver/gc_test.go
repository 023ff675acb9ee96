package driver

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
)

// TestCacheGCCommand: without limits nothing happens; --dry-run prints
// the plan and removes nothing; the real pass removes and counts.
func TestCacheGCCommand(t *testing.T) {
	h := newHarness(t, nil)
	recs := cacheRecords(h.deps())
	old := time.Now().Add(-time.Hour)
	for i, name := range []string{"warmcache-go-aaaaaaaaaaaa", "warmcache-go-bbbbbbbbbbbb"} {
		labels := cache.Scope("")
		labels[naming.LabelCacheProjectPath], labels[naming.LabelCacheProfile] = "group/project", "go"
		if err := h.f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: name, Labels: labels}); err != nil {
			t.Fatal(err)
		}
		old = old.Add(time.Minute)
		used := old
		if err := recs.Update(name, func(r *record.Record) error {
			r.LastUsed, r.SizeBytes, r.Measured = used, int64(3-i)<<20, used
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	run := func(dryRun bool) string {
		t.Helper()
		h.stdout.Reset()
		if err := CacheGC(context.Background(), h.deps(), dryRun); err != nil {
			t.Fatal(err)
		}
		return h.stdout.String()
	}
	if out := run(false); out != "No cache.gc limit is set: nothing to evict.\n" {
		t.Errorf("without limits: %q", out)
	}
	h.cfg.Cache.GC.Budget = 4 << 20
	want := "Would evict warmcache-go-aaaaaaaaaaaa (group/project go, 3.0 MiB, last used 59m ago): over budget\n" +
		"2 cache volumes, 5.0 MiB; 1 evicted (3.0 MiB)\n"
	if out := run(true); out != want {
		t.Errorf("dry run:\n%s\nwant\n%s", out, want)
	}
	if _, ok := h.f.Volume("warmcache-go-aaaaaaaaaaaa"); !ok {
		t.Fatal("the dry run removed a volume")
	}
	if out := run(false); out != strings.Replace(want, "Would evict", "Evicted", 1) {
		t.Errorf("gc:\n%s\nwant the dry run's figures:\n%s", out, want)
	}
	if _, ok := h.f.Volume("warmcache-go-aaaaaaaaaaaa"); ok {
		t.Error("the least recently used volume survived")
	}
}

// TestPrepareGCKeepsJobCaches: the GC pass of a prepare never evicts what
// the job is about to claim or fork, however idle; others go.
func TestPrepareGCKeepsJobCaches(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Cache.Enabled = true
	h.cfg.Cache.Fork = cache.ForkKeep
	h.cfg.Cache.GC.MaxIdle = time.Hour
	d := h.deps()
	j, err := job.Load(d.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	keep := d.Caches.Names(j)
	// /cache and two Go caches, their protected caches and kept layers.
	if len(keep) != 9 {
		t.Fatalf("job caches %v, want 9", keep)
	}
	old := time.Now().Add(-48 * time.Hour)
	for name := range maps.Keys(keep) {
		addCache(t, h, name, old)
	}
	addCache(t, h, "warmcache-go-otherproject", old)
	d.Caches.GCAtStage(t.Context(), keep)
	for name := range keep {
		if _, ok := h.f.Volume(name); !ok {
			t.Errorf("the job's cache %s was evicted", name)
		}
	}
	if _, ok := h.f.Volume("warmcache-go-otherproject"); ok {
		t.Error("an idle cache of another project was kept")
	}
}

// addCache makes a cache volume name last used at used.
func addCache(t *testing.T, h *harness, name string, used time.Time) {
	t.Helper()
	if err := h.f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: name, Labels: cache.Scope("")}); err != nil {
		t.Fatal(err)
	}
	if err := cacheRecords(h.deps()).Update(name, func(r *record.Record) error {
		r.LastUsed, r.Claimed = used, used
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
