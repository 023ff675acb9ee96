package stages

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/cachevol"
	"github.com/warmcache/warmcache/runtime"
)

// TestCacheGCCommand: without limits nothing happens; --dry-run prints
// the plan and removes nothing; the real pass removes and counts.
func TestCacheGCCommand(t *testing.T) {
	h := newHarness(t, nil)
	recs := cacheRecords(h.deps())
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{"warmcache-go-aaaaaaaaaaaa", "warmcache-go-bbbbbbbbbbbb"} {
		labels := cachevol.Scope("")
		labels[cachevol.LabelProjectPath], labels[cachevol.LabelProfile] = "group/project", "go"
		if err := h.f.EnsureVolume(t.Context(), runtime.VolumeSpec{Name: name, Labels: labels}); err != nil {
			t.Fatal(err)
		}
		old = old.Add(time.Minute)
		used := old
		if err := recs.Update(name, func(r *cachevol.Record) error {
			r.LastUsed, r.SizeBytes, r.Measured = used, 3<<20, used
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
		"2 cache volumes, 6.0 MiB; 1 evicted (3.0 MiB)\n"
	if out := run(true); out != want {
		t.Errorf("dry run:\n%s\nwant\n%s", out, want)
	}
	if _, ok := h.f.Volume("warmcache-go-aaaaaaaaaaaa"); !ok {
		t.Fatal("the dry run removed a volume")
	}
	if out := run(false); !strings.HasPrefix(out, "Evicted warmcache-go-aaaaaaaaaaaa (") {
		t.Errorf("gc: %q", out)
	}
	if _, ok := h.f.Volume("warmcache-go-aaaaaaaaaaaa"); ok {
		t.Error("the least recently used volume survived")
	}
}
