package driver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
)

// TestStageMetrics: a prepare adds one prepare and one pull duration to
// the metrics textfile, a restore_cache stage one restore duration, and
// other stages none.
func TestStageMetrics(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Cache.MetricsFile = filepath.Join(t.TempDir(), "warmcache.prom")
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	recordExecs(h, engine.Exit{})
	path := writeFile(t, "script", "#!/usr/bin/env bash\ntrue\n")
	for _, stage := range []string{"get_sources", "restore_cache", "build_script"} {
		if err := Run(context.Background(), h.deps(), path, stage); err != nil {
			t.Fatalf("Run(%s): %v", stage, err)
		}
	}
	text, err := os.ReadFile(h.cfg.Cache.MetricsFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`warmcache_stage_duration_seconds_count{stage="prepare"} 1`,
		`warmcache_stage_duration_seconds_count{stage="pull"} 1`,
		`warmcache_stage_duration_seconds_count{stage="restore"} 1`,
		`warmcache_oom_kills_total 0`,
	} {
		if !strings.Contains(string(text), line+"\n") {
			t.Errorf("textfile lacks %s:\n%s", line, text)
		}
	}
}
