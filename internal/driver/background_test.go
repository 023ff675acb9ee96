package driver

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
)

// detachedRecorder is a Detached that records the work it was handed, or
// cannot start its process (err).
type detachedRecorder struct {
	err       error
	tries     int
	started   []string
	removed   []removal
	published []string
}

// removal is one RemoveJob handed to a detachedRecorder.
type removal struct {
	base string
	rs   []engine.Resource
}

func (r *detachedRecorder) StartContainer(name, _ string) error {
	r.tries++
	if r.err != nil {
		return r.err
	}
	r.started = append(r.started, name)
	return nil
}

func (r *detachedRecorder) RemoveJob(base string, rs []engine.Resource) error {
	r.tries++
	if r.err != nil {
		return r.err
	}
	r.removed = append(r.removed, removal{base, rs})
	return nil
}

func (r *detachedRecorder) PublishCaches(trust string, volumes []string) error {
	r.tries++
	if r.err != nil {
		return r.err
	}
	r.published = append(r.published, trust+":"+strings.Join(volumes, ","))
	return nil
}

// With a background starter, prepare starts only the helper and hands the
// build container's start to a detached process; the build container
// joins the helper's network namespace.
func TestPrepareStartsBuildInBackground(t *testing.T) {
	h := newHarness(t, nil)
	background := &detachedRecorder{}
	d := h.deps()
	d.Detached = background
	if err := Prepare(context.Background(), d); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	helper, build := sampleKey.Name(naming.KindHelper), sampleKey.Name(naming.KindBuild)
	if want := []string{build}; !slices.Equal(background.started, want) || len(background.removed) != 0 {
		t.Errorf("background started %q and removed %q, want %q started", background.started, background.removed, want)
	}
	if got := methods(h.f, build); !slices.Equal(got, []string{"CreateContainer"}) {
		t.Errorf("calls on the build container = %v, want only its creation", got)
	}
	if got := methods(h.f, helper); !slices.Equal(got, []string{"CreateContainer", "StartContainer"}) {
		t.Errorf("calls on the helper = %v", got)
	}
	c, _ := h.f.Container(build)
	if c.Spec.NetworkMode != "container:"+helper {
		t.Errorf("build container network = %q, want the helper's namespace", c.Spec.NetworkMode)
	}

	// The first build stage finds the container still created and starts
	// it; a later one does not start it again.
	for range 2 {
		if err := Run(context.Background(), d, writeFile(t, "script", "true\n"), "build_script"); err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	if got := methods(h.f, build); !slices.Equal(got, []string{"CreateContainer", "Exec", "ContainerState", "StartContainer", "Exec", "Exec"}) {
		t.Errorf("calls on the build container = %v", got)
	}
}

// A job running as another user needs its build container at once, and a
// starter that cannot be launched falls back to starting it now.
func TestPrepareStartsBuildNowWhenItMust(t *testing.T) {
	for name, tc := range map[string]struct {
		user    string
		starter error
	}{
		"non-root job user":           {user: "1000"},
		"background starter unusable": {starter: errors.New("no executable")},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(j map[string]any) {
				if tc.user != "" {
					j["image"].(map[string]any)["executor_opts"] = map[string]any{"docker": map[string]any{"user": tc.user}}
				}
			})
			d := h.deps()
			background := &detachedRecorder{err: tc.starter}
			d.Detached = background
			if err := Prepare(context.Background(), d); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			c, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
			if c.State != fake.Running {
				t.Errorf("build container is %s, want running", c.State)
			}
			if wantLaunch := tc.user == ""; (background.tries == 1) != wantLaunch {
				t.Errorf("background starter launched %d times", background.tries)
			}
		})
	}
}

// The background start may finish between the exec that found the build
// container not yet running and the look at its state: run goes on.
func TestRunWhenTheBackgroundStartJustFinished(t *testing.T) {
	h := newHarness(t, nil)
	d := h.deps()
	d.Detached = &detachedRecorder{}
	if err := Prepare(context.Background(), d); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	build := sampleKey.Name(naming.KindBuild)
	started := make(chan error)
	h.f.SetHook(func(method, name string) error {
		if method == fake.MethodContainerState && name == build {
			// The detached starter wins the race right now.
			go func() { started <- StartContainer(context.Background(), h.f, build, "") }()
			return <-started
		}
		return nil
	})
	if err := Run(context.Background(), d, writeFile(t, "script", "true\n"), "build_script"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := methods(h.f, build); !slices.Equal(got, []string{"CreateContainer", "Exec", "ContainerState", "StartContainer", "Exec"}) {
		t.Errorf("calls on the build container = %v: want no second start once it runs", got)
	}
}

// The early starter starts the build container only once the helper runs,
// and gives up when the helper is gone (a failed prepare).
func TestStartContainerAfter(t *testing.T) {
	h := newHarness(t, nil)
	h.f.AddImage(testHelperImage)
	ctx := context.Background()
	for _, name := range []string{"helper", "build"} {
		if err := h.f.CreateContainer(ctx, engine.ContainerSpec{Name: name, Image: testHelperImage}); err != nil {
			t.Fatal(err)
		}
	}
	polls := 0
	h.f.SetHook(func(method, name string) error {
		if method == fake.MethodContainerState && name == "helper" {
			if polls++; polls == 3 { // the helper's start ends under the third look
				return h.f.StartContainer(ctx, "helper")
			}
		}
		return nil
	})
	if err := StartContainer(ctx, h.f, "build", "helper"); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if state, _ := h.f.ContainerState(ctx, "build"); state != "running" || polls != 3 {
		t.Errorf("build is %s after %d looks at the helper, want running after 3", state, polls)
	}

	h.f.SetHook(nil)
	if err := h.f.CreateContainer(ctx, engine.ContainerSpec{Name: "orphan", Image: testHelperImage}); err != nil {
		t.Fatal(err)
	}
	err := StartContainer(ctx, h.f, "orphan", "no-such-helper")
	if err == nil || !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("StartContainer after a missing helper = %v, want not found", err)
	}
	if state, _ := h.f.ContainerState(ctx, "orphan"); state != "created" {
		t.Errorf("orphan is %s, want never started", state)
	}
}
