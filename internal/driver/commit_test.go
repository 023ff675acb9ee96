package driver

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

type stepRun struct {
	stage string
	err   error
}

// TestStepsSucceeded: the commit signal is every step of the job ending
// well, by its own mark.
func TestStepsSucceeded(t *testing.T) {
	tests := []struct {
		name   string
		job    []string // the job's steps, as stepStages names them
		steps  []stepRun
		killed string // a step whose driver was killed: started, never ended
		want   bool
	}{
		{name: "no step", job: []string{"build_script"}, want: false},
		{name: "one step passes", job: []string{"build_script"}, steps: []stepRun{{"build_script", nil}}, want: true},
		{name: "a later step fails", job: []string{"build_script", "step_release"}, steps: []stepRun{{"build_script", nil}, {"step_release", &protocol.BuildFailure{Code: 1}}}, want: false},
		{name: "system failure", job: []string{"build_script"}, steps: []stepRun{{"build_script", errors.New("engine gone")}}, want: false},
		{name: "after_script and others do not count", job: []string{"build_script"}, steps: []stepRun{{"build_script", nil}, {"after_script", &protocol.BuildFailure{Code: 1}}, {"upload_artifacts_on_success", errors.New("x")}}, want: true},
		{name: "killed during a step", job: []string{"build_script", "step_deploy"}, steps: []stepRun{{"build_script", nil}}, killed: "step_deploy", want: false},
		// A step whose marks could not be written (a failed list of the
		// layers, a full disk) counts as failed.
		{name: "a step left no mark", job: []string{"build_script", "step_release"}, steps: []stepRun{{"build_script", nil}}, want: false},
		{name: "a job without steps", steps: []stepRun{{"build_script", nil}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.cfg.Cache.CommitOnSuccess = true
			dir := t.TempDir()
			for _, s := range tt.steps {
				err := s.err
				if protocol.IsStep(s.stage) { // what markStep notes
					markStepIn(h.deps(), []string{dir}, s.stage)(&err)
				}
			}
			if tt.killed != "" {
				markStepIn(h.deps(), []string{dir}, tt.killed)
			}
			if got := stepsSucceeded(dir, tt.job); got != tt.want {
				t.Errorf("stepsSucceeded = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStepStages: the job response's steps as run stages.
func TestStepStages(t *testing.T) {
	steps := []job.Step{{Name: "script"}, {Name: "release"}, {Name: "after_script", Script: []string{"x"}}}
	if got, want := stepStages(steps), []string{"build_script", "step_release"}; !slices.Equal(got, want) {
		t.Errorf("stepStages = %q, want %q", got, want)
	}
}

// TestCommitSkippedWhileMounted: a layer is not applied to a shared cache
// that another running job's overlay stands on (overlayfs leaves changes
// to a mounted lower directory undefined); once that job is gone, it is.
func TestCommitSkippedWhileMounted(t *testing.T) {
	h, layer := commitFixture(t)
	d, ctx, target := h.deps(), t.Context(), layer.Labels[cache.LabelCommitTo]
	mine := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 1}
	other := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 2}
	ownFork := mine.Labels(naming.KindFork, naming.JobMeta{})
	ownFork[cache.LabelForkLower] = target
	otherFork := other.Labels(naming.KindFork, naming.JobMeta{})
	otherFork[cache.LabelForkLower] = target
	for _, v := range []engine.VolumeSpec{{Name: "own-fork", Labels: ownFork}, {Name: "other-fork", Labels: otherFork}} {
		if err := h.f.EnsureVolume(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	to, _ := h.f.Volume(target)
	from, _ := h.f.Volume("layer")
	if err := os.MkdirAll(filepath.Join(from.Mountpoint, "upper"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(from.Mountpoint, "upper", "new.jar"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := commitLayer(ctx, d, layer); !errors.Is(err, errCacheMounted) {
		t.Fatalf("commit under another job's overlay: %v, want errCacheMounted", err)
	}
	if _, err := os.Stat(filepath.Join(to.Mountpoint, "new.jar")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the layer was applied under another job's overlay: %v", err)
	}
	if err := h.f.Remove(ctx, engine.Resource{Type: engine.Volume, Name: "other-fork"}); err != nil {
		t.Fatal(err)
	}
	// The job's own overlay does not count: its containers are gone.
	if err := commitLayer(ctx, d, layer); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(to.Mountpoint, "new.jar")); err != nil {
		t.Errorf("the layer was not applied once the cache was free: %v", err)
	}
}

// TestCommitHalfAppliedEvicts: a commit that fails after changing the
// shared cache removes it and clears its record: the next job starts
// cold, not from a mix of the old cache and part of a layer.
func TestCommitHalfAppliedEvicts(t *testing.T) {
	h, layer := commitFixture(t)
	d, ctx, target := h.deps(), t.Context(), layer.Labels[cache.LabelCommitTo]
	to, _ := h.f.Volume(target)
	from, _ := h.f.Volume("layer")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(to.Mountpoint, "a.jar"), "old")
	if err := cacheRecords(d).Update(target, func(r *cache.Record) error {
		r.LastUsed, r.SizeBytes = time.Now(), 3
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The upper directory on a tmpfs: deleting a.jar works, moving b.jar
	// into the cache cannot (a rename across filesystems).
	upper, err := os.MkdirTemp("/dev/shm", "upper")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(upper) })
	if err := unix.Mknod(filepath.Join(upper, "a.jar"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(upper, "b.jar"), "new")
	if err := os.Symlink(upper, filepath.Join(from.Mountpoint, "upper")); err != nil {
		t.Fatal(err)
	}

	err = commitLayer(ctx, d, layer)
	if !errors.Is(err, cache.ErrHalfApplied) {
		t.Fatalf("commitLayer = %v, want ErrHalfApplied", err)
	}
	if _, ok := h.f.Volume(target); ok {
		t.Error("the half-committed cache volume is still there")
	}
	if rec, err := cacheRecords(d).Get(target); err != nil || rec != (cache.Record{}) {
		t.Errorf("record of the half-committed cache: %+v, %v; want it cleared", rec, err)
	}
}

// commitFixture makes a shared cache volume and the commit layer over it
// of a job, on a fake engine with volume directories, commit_on_success on.
func commitFixture(t *testing.T) (*harness, engine.Resource) {
	t.Helper()
	h := newHarness(t, nil)
	h.cfg.Cache.CommitOnSuccess = true
	h.f.SetVolumeRoot(t.TempDir())
	const target = "warmcache-maven-shared"
	layerLabels := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 1}.Labels(naming.KindCommit, naming.JobMeta{})
	layerLabels[cache.LabelCommitTo] = target
	for _, v := range []engine.VolumeSpec{
		{Name: target, Labels: map[string]string{naming.LabelKind: string(naming.KindCache)}},
		{Name: "layer", Labels: layerLabels},
	} {
		if err := h.f.EnsureVolume(t.Context(), v); err != nil {
			t.Fatal(err)
		}
	}
	return h, engine.Resource{Type: engine.Volume, Name: "layer", Labels: layerLabels}
}
