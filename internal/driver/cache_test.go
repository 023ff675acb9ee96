package driver

import (
	"maps"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/cache/gc"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
)

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
	if err := h.f.EnsureVolume(t.Context(), engine.VolumeSpec{Name: name, Labels: gc.Scope("")}); err != nil {
		t.Fatal(err)
	}
	if err := cacheRecords(h.deps()).Update(name, func(r *record.Record) error {
		r.LastUsed, r.Claimed = used, used
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
