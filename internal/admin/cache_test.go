package admin

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache/gc"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// TestCacheGCCommand: without limits nothing happens; --dry-run prints
// the plan and removes nothing; the real pass removes and counts.
func TestCacheGCCommand(t *testing.T) {
	h := newHarness()
	h.cfg.Cache.StateDir = t.TempDir()
	var out bytes.Buffer
	recs := record.Records{Dir: filepath.Join(h.cfg.Cache.StateDir, "caches")}
	old := time.Now().Add(-time.Hour)
	for i, name := range []string{"warmcache-go-aaaaaaaaaaaa", "warmcache-go-bbbbbbbbbbbb"} {
		labels := gc.Scope("")
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
		out.Reset()
		d := h.deps()
		d.Stdout = &out
		if err := CacheGC(context.Background(), d, dryRun); err != nil {
			t.Fatal(err)
		}
		return out.String()
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
