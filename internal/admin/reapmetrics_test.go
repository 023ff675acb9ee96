package admin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// TestReapMetrics: a reap counts what it removed by kind and stamps its
// end in the metrics; a dry run changes neither.
func TestReapMetrics(t *testing.T) {
	for _, dryRun := range []bool{true, false} {
		h := newHarness()
		dir := t.TempDir()
		h.cfg.Cache.StateDir = dir
		h.cfg.Cache.MetricsFile = filepath.Join(dir, "warmcache.prom")
		key := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: 2}
		labels := key.Labels(naming.KindBuild, naming.JobMeta{TimeoutSeconds: 60, Created: time.Now().Add(-24 * time.Hour)})
		h.f.AddImage("img")
		if err := h.f.CreateContainer(context.Background(), engine.ContainerSpec{Name: key.Name(naming.KindBuild), Image: "img", Labels: labels}); err != nil {
			t.Fatal(err)
		}
		if err := Reap(context.Background(), h.deps(), dryRun); err != nil {
			t.Fatalf("Reap: %v", err)
		}
		text, err := os.ReadFile(h.cfg.Cache.MetricsFile)
		if dryRun {
			if err == nil {
				t.Errorf("a dry run wrote the metrics:\n%s", text)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), "warmcache_reaped_resources_total{kind=\"container\"} 1\n") ||
			!strings.Contains(string(text), "warmcache_reap_last_success_timestamp_seconds ") {
			t.Errorf("metrics after a reap:\n%s", text)
		}
	}
}
