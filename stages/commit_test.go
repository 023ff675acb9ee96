package stages

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/warmcache/warmcache/cachevol"
	"github.com/warmcache/warmcache/naming"
	"github.com/warmcache/warmcache/runtime"
)

type stepRun struct {
	stage string
	err   error
}

// TestStepsSucceeded: the commit signal is every started step ending well.
func TestStepsSucceeded(t *testing.T) {
	tests := []struct {
		name   string
		steps  []stepRun
		killed string // a step whose driver was killed: started, never ended
		want   bool
	}{
		{name: "no step", want: false},
		{name: "one step passes", steps: []stepRun{{"build_script", nil}}, want: true},
		{name: "a later step fails", steps: []stepRun{{"build_script", nil}, {"step_release", &BuildFailure{Code: 1}}}, want: false},
		{name: "system failure", steps: []stepRun{{"build_script", errors.New("engine gone")}}, want: false},
		{name: "after_script and others do not count", steps: []stepRun{{"build_script", nil}, {"after_script", &BuildFailure{Code: 1}}, {"upload_artifacts_on_success", errors.New("x")}}, want: true},
		{name: "killed during a step", steps: []stepRun{{"build_script", nil}}, killed: "step_deploy", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.cfg.Cache.CommitOnSuccess = true
			dir := t.TempDir()
			for _, s := range tt.steps {
				err := s.err
				if isStep(s.stage) { // what markStep notes
					markStepIn(h.deps(), []string{dir}, s.stage)(&err)
				}
			}
			if tt.killed != "" {
				markStepIn(h.deps(), []string{dir}, tt.killed)
			}
			if got := stepsSucceeded(dir); got != tt.want {
				t.Errorf("stepsSucceeded = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCommitSkippedWhileMounted: a layer is not applied to a shared cache
// that another running job's overlay stands on (overlayfs leaves changes
// to a mounted lower directory undefined); once that job is gone, it is.
func TestCommitSkippedWhileMounted(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Cache.CommitOnSuccess = true
	h.f.SetVolumeRoot(t.TempDir())
	d, ctx := h.deps(), t.Context()
	target := "warmcache-maven-shared"
	cacheLabels := map[string]string{naming.LabelKind: string(naming.KindCache)}
	mine := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 1}
	other := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 2}
	layerLabels := mine.Labels(naming.KindCommit, naming.JobMeta{})
	layerLabels[cachevol.LabelCommitTo] = target
	ownFork := mine.Labels(naming.KindFork, naming.JobMeta{})
	ownFork[cachevol.LabelForkLower] = target
	otherFork := other.Labels(naming.KindFork, naming.JobMeta{})
	otherFork[cachevol.LabelForkLower] = target
	for _, v := range []runtime.VolumeSpec{
		{Name: target, Labels: cacheLabels},
		{Name: "layer", Labels: layerLabels},
		{Name: "own-fork", Labels: ownFork},
		{Name: "other-fork", Labels: otherFork},
	} {
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
	layer := runtime.Resource{Type: runtime.Volume, Name: "layer", Labels: layerLabels}

	if err := commitLayer(ctx, d, layer); !errors.Is(err, errCacheMounted) {
		t.Fatalf("commit under another job's overlay: %v, want errCacheMounted", err)
	}
	if _, err := os.Stat(filepath.Join(to.Mountpoint, "new.jar")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the layer was applied under another job's overlay: %v", err)
	}
	if err := h.f.Remove(ctx, runtime.Resource{Type: runtime.Volume, Name: "other-fork"}); err != nil {
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
