package driver

import (
	"context"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
)

// The run stage that ends a job's steps without an error hands the job's
// caches to a detached publish, per cache.remote.publish; a failed step,
// a stage before the last step, or no remote tier publishes nothing.
func TestRunPublishesAfterSuccessfulSteps(t *testing.T) {
	for _, tc := range []struct {
		name      string
		protected bool
		url       string
		publish   string
		want      string // the trust class published, "" none
	}{
		{"protected", true, "http://127.0.0.1:8333", "protected", "protected:"},
		{"unprotected, publish protected", false, "http://127.0.0.1:8333", "protected", ""},
		{"unprotected, publish all", false, "http://127.0.0.1:8333", "all", "unprotected:"},
		{"publish none", true, "http://127.0.0.1:8333", "none", ""},
		{"no remote tier", true, "", "protected", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(j map[string]any) { j["git_info"].(map[string]any)["protected"] = tc.protected })
			h.cfg.Cache.Enabled = true
			h.cfg.Cache.Remote.URL, h.cfg.Cache.Remote.Publish = tc.url, tc.publish
			h.f.SetVolumeRoot(t.TempDir())
			rec := &detachedRecorder{}
			d := h.deps()
			d.Detached = rec
			if err := Prepare(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			// A failed step, then a stage that is not the last step.
			recordExecs(h, engine.Exit{Code: 1})
			if err := Run(context.Background(), d, writeFile(t, "script", "exit 1\n"), "build_script"); err == nil {
				t.Fatal("a failing step succeeded")
			}
			recordExecs(h, engine.Exit{})
			if err := Run(context.Background(), d, writeFile(t, "script", "true\n"), "get_sources"); err != nil {
				t.Fatal(err)
			}
			if len(rec.published) != 0 {
				t.Fatalf("published %q before the steps succeeded", rec.published)
			}
			if err := Run(context.Background(), d, writeFile(t, "script", "true\n"), "build_script"); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "" && len(rec.published) != 0:
				t.Fatalf("published %q", rec.published)
			case tc.want != "" && (len(rec.published) != 1 || !strings.HasPrefix(rec.published[0], tc.want) || !strings.Contains(rec.published[0], "warmcache-go-")):
				t.Fatalf("published %q, want the job's go caches as %s", rec.published, tc.want)
			}
		})
	}
}
