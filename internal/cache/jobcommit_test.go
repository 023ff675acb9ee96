package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/host"
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
		{name: "a later step fails", job: []string{"build_script", "step_release"}, steps: []stepRun{{"build_script", nil}, {"step_release", errors.New("exit 1")}}, want: false},
		{name: "system failure", job: []string{"build_script"}, steps: []stepRun{{"build_script", errors.New("engine gone")}}, want: false},
		{name: "after_script and others do not count", job: []string{"build_script"}, steps: []stepRun{{"build_script", nil}, {"after_script", errors.New("exit 1")}, {"upload_artifacts_on_success", errors.New("x")}}, want: true},
		{name: "killed during a step", job: []string{"build_script", "step_deploy"}, steps: []stepRun{{"build_script", nil}}, killed: "step_deploy", want: false},
		// A step whose marks could not be written (a failed list of the
		// layers, a full disk) counts as failed.
		{name: "a step left no mark", job: []string{"build_script", "step_release"}, steps: []stepRun{{"build_script", nil}}, want: false},
		{name: "a job without steps", steps: []stepRun{{"build_script", nil}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, layer := commitFixture(t)
			key := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 1}
			for _, s := range tt.steps {
				err := s.err
				m.MarkStep(key, s.stage, protocol.IsStep(s.stage))(&err)
			}
			if tt.killed != "" {
				m.MarkStep(key, tt.killed, true)
			}
			marks, _ := m.host.ReadFile(t.Context(), layer.Name, stepsFile)
			if got := stepsSucceeded(marks, tt.job); got != tt.want {
				t.Errorf("stepsSucceeded = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCommitSkippedWhileMounted: a layer is not applied to a shared cache
// that another running job's overlay stands on (overlayfs leaves changes
// to a mounted lower directory undefined); once that job is gone, it is.
func TestCommitSkippedWhileMounted(t *testing.T) {
	m, layer := commitFixture(t)
	f, ctx, target := m.engine.(*fake.Engine), t.Context(), layer.Labels[naming.LabelCommitTo]
	mine := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 1}
	other := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 2}
	ownFork := mine.Labels(naming.KindFork, naming.JobMeta{})
	ownFork[naming.LabelForkLower] = target
	otherFork := other.Labels(naming.KindFork, naming.JobMeta{})
	otherFork[naming.LabelForkLower] = target
	for _, v := range []engine.VolumeSpec{{Name: "own-fork", Labels: ownFork}, {Name: "other-fork", Labels: otherFork}} {
		if err := f.EnsureVolume(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	to, _ := f.Volume(target)
	from, _ := f.Volume("layer")
	if err := os.MkdirAll(filepath.Join(from.Mountpoint, "upper"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(from.Mountpoint, "upper", "new.jar"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.commitLayer(ctx, layer); !errors.Is(err, errCacheMounted) {
		t.Fatalf("commit under another job's overlay: %v, want errCacheMounted", err)
	}
	if _, err := os.Stat(filepath.Join(to.Mountpoint, "new.jar")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the layer was applied under another job's overlay: %v", err)
	}
	if err := f.Remove(ctx, engine.Resource{Type: engine.Volume, Name: "other-fork"}); err != nil {
		t.Fatal(err)
	}
	// The job's own overlay does not count: its containers are gone.
	if err := m.commitLayer(ctx, layer); err != nil {
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
	m, layer := commitFixture(t)
	f, ctx, target := m.engine.(*fake.Engine), t.Context(), layer.Labels[naming.LabelCommitTo]
	to, _ := f.Volume(target)
	from, _ := f.Volume("layer")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(to.Mountpoint, "a.jar"), "old")
	if err := m.records.Update(target, func(r *record.Record) error {
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

	err = m.commitLayer(ctx, layer)
	if !errors.Is(err, host.ErrHalfApplied) {
		t.Fatalf("commitLayer = %v, want ErrHalfApplied", err)
	}
	if _, ok := f.Volume(target); ok {
		t.Error("the half-committed cache volume is still there")
	}
	if rec, err := m.records.Get(target); err != nil || rec != (record.Record{}) {
		t.Errorf("record of the half-committed cache: %+v, %v; want it cleared", rec, err)
	}
}

// commitFixture makes a shared cache volume and the commit layer over it
// of a job, on a fake engine with volume directories, commit_on_success on.
func commitFixture(t *testing.T) (*Manager, engine.Resource) {
	t.Helper()
	f, _ := localEngine(t)
	m := newManager(t, f, config.Cache{CommitOnSuccess: true}, true)
	const target = "warmcache-maven-shared"
	layerLabels := naming.JobKey{Runner: "r", ProjectID: 1, JobID: 1}.Labels(naming.KindCommit, naming.JobMeta{})
	layerLabels[naming.LabelCommitTo] = target
	for _, v := range []engine.VolumeSpec{
		{Name: target, Labels: map[string]string{naming.LabelKind: string(naming.KindCache)}},
		{Name: "layer", Labels: layerLabels},
	} {
		if err := f.EnsureVolume(t.Context(), v); err != nil {
			t.Fatal(err)
		}
	}
	return m, engine.Resource{Type: engine.Volume, Name: "layer", Labels: layerLabels}
}
