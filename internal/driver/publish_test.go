package driver

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/cache/remote"
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

// fakeRemote is a fleet cache tier that restores nothing and says so.
type fakeRemote struct{ asked []string }

func (r *fakeRemote) Restore(_ context.Context, v remote.Volume) remote.Restored {
	r.asked = append(r.asked, v.Path)
	return remote.Restored{Line: "Cache " + v.Profile + " " + v.Path + ": restored 1.0 MiB from the fleet cache in 0.1 s", OK: true, Bytes: 1 << 20}
}

// Prepare asks the fleet cache for the caches new on this host only, and
// its line replaces the cold one.
func TestPrepareRestoresNewCachesFromTheFleet(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Cache.Enabled = true
	h.f.SetVolumeRoot(t.TempDir())
	r := &fakeRemote{}
	for i := range 2 {
		d := h.deps()
		d.Caches.SetRemote(r)
		if err := Prepare(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := Cleanup(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := []string{"/cache", "/go/pkg/mod", "/root/.cache/go-build"}; !slices.Equal(r.asked, want) {
		t.Fatalf("restores asked for %q, want %q once (then warm)", r.asked, want)
	}
	log := h.stderr.String()
	if !strings.Contains(log, "Cache go /go/pkg/mod: restored 1.0 MiB from the fleet cache") || strings.Contains(log, "/go/pkg/mod: cold") {
		t.Fatalf("job log:\n%s", log)
	}
}
