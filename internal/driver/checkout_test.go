package driver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// gitHarness is a harness with the git profile on and GIT_STRATEGY set to
// strategy ("" leaves the sample's fetch).
func gitHarness(t *testing.T, strategy string) *harness {
	t.Helper()
	h := newHarness(t, func(j map[string]any) {
		if strategy == "" {
			return
		}
		for _, v := range j["variables"].([]any) {
			if m := v.(map[string]any); m["key"] == "GIT_STRATEGY" {
				m["value"] = strategy
			}
		}
	})
	h.cfg.Cache.Enabled = true
	h.cfg.Cache.Profiles = []string{"git"}
	h.env["CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID"] = "1"
	return h
}

// checkoutVolume is the git cache volume the harness's job plans.
func checkoutVolume(t *testing.T, h *harness) cache.Volume {
	t.Helper()
	j, err := job.Load(h.deps().Getenv)
	if err != nil {
		t.Fatal(err)
	}
	key := profile.KeyFor(j)
	if key.ProjectSlot != 1 {
		t.Fatalf("project slot %d, want 1 from CI_CONCURRENT_PROJECT_ID", key.ProjectSlot)
	}
	return profile.Plan(key, []cache.Profile{profile.Git})[0]
}

// TestPrepareWarmCheckout: a fetch job (also one as another user than
// root, beside a local engine) mounts its project slot's checkout at
// builds_dir in both containers, with the project's git store read-only,
// and gets no builds volume of its own; clone, none and empty keep the
// job's own, as before, and no store.
func TestPrepareWarmCheckout(t *testing.T) {
	for _, strategy := range []string{"", "fetch", "clone", "none", "empty", "fetch as user 1000"} {
		t.Run("GIT_STRATEGY="+strategy, func(t *testing.T) {
			strategy, user, _ := strings.Cut(strategy, " as user ")
			h := gitHarness(t, strategy)
			if user != "" {
				h.env["JOB_RESPONSE_FILE"] = writeJob(t, func(j map[string]any) { j["services"] = []any{}; setJobUser(j, user) })
			}
			if err := Prepare(context.Background(), h.deps()); err != nil {
				t.Fatal(err)
			}
			git := checkoutVolume(t, h)
			own := sampleKey.Name(naming.KindBuilds)
			want, other := git.Name, own
			store := true
			if strategy != "" && strategy != "fetch" {
				want, other, store = own, git.Name, false
			}
			for _, kind := range []naming.Kind{naming.KindHelper, naming.KindBuild} {
				c, _ := h.f.Container(sampleKey.Name(kind))
				var at []string
				stores := 0
				for _, m := range c.Spec.Mounts {
					if m.Target == protocol.BuildsDir {
						at = append(at, m.Volume)
					}
					if m.Target == protocol.GitStoreDir && m.ReadOnly {
						stores++
					}
				}
				if !slices.Equal(at, []string{want}) {
					t.Errorf("%s mounts %v at %s, want [%s]", kind, at, protocol.BuildsDir, want)
				}
				if store != (stores == 1) {
					t.Errorf("%s mounts the git store read-only %d times, want it %v", kind, stores, store)
				}
			}
			if _, ok := h.f.Volume(other); ok {
				t.Errorf("volume %s was made too", other)
			}
			info, ok := h.f.Volume(want)
			if want == git.Name && (!ok || info.Labels[naming.LabelKind] != string(naming.KindCache) || info.Labels[naming.LabelCacheProfile] != "git" || info.Labels[naming.LabelCacheSlot] != "1") {
				t.Errorf("checkout volume %s: %+v, %v", want, info.Labels, ok)
			}
		})
	}
}

// TestPrepareDamagedCheckout: a checkout an interrupted fetch left locked
// is replaced by an empty one, with one line in the job log; a healthy one
// is kept as it is.
func TestPrepareDamagedCheckout(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		damaged    bool
	}{
		{"healthy", "group/project/.git/HEAD", false},
		{"index.lock", "group/project/.git/index.lock", true},
		{"shallow.lock", "group/project/.git/shallow.lock", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := gitHarness(t, "")
			h.f.SetVolumeRoot(t.TempDir())
			if err := Prepare(context.Background(), h.deps()); err != nil {
				t.Fatal(err)
			}
			git := checkoutVolume(t, h)
			info, _ := h.f.Volume(git.Name)
			for _, f := range []string{"group/project/.git/HEAD", "group/project/.git/objects/pack/p.pack", "group/project/main.go", tt.file} {
				path := filepath.Join(info.Mountpoint, f)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := Cleanup(h.deps()); err != nil {
				t.Fatal(err)
			}
			h.stderr.Reset()
			if err := Prepare(context.Background(), h.deps()); err != nil {
				t.Fatal(err)
			}
			var notes []string
			for _, l := range h.stderrLines() {
				if strings.Contains(l, "damaged") {
					notes = append(notes, l)
				}
			}
			info, _ = h.f.Volume(git.Name)
			_, err := os.Stat(filepath.Join(info.Mountpoint, "group/project/main.go"))
			kept := err == nil
			if !tt.damaged {
				if len(notes) != 0 || !kept {
					t.Errorf("a healthy checkout: notes %q, kept %v", notes, kept)
				}
				return
			}
			want := "Cache git /builds: damaged (" + tt.file + ": a git command was interrupted): replaced by a fresh checkout"
			if !slices.Equal(notes, []string{want}) || kept {
				t.Errorf("notes %q (want [%q]), kept %v", notes, want, kept)
			}
			c, _ := h.f.Container(sampleKey.Name(naming.KindHelper))
			if !slices.Contains(c.Spec.Mounts, engine.Mount{Volume: git.Name, Target: protocol.BuildsDir, NoCopy: true}) {
				t.Errorf("helper mounts %+v, want the fresh checkout", c.Spec.Mounts)
			}
		})
	}
}
