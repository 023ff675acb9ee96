package admin

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/naming"
	"go.uber.org/zap"
)

const testHelperImage = "registry.example.com/gitlab-runner-helper:test"

// harness is an admin command's environment over a fake engine.
type harness struct {
	f   *fake.Engine
	cfg config.Config
}

// newHarness returns a harness with the default config except a fixed
// helper image.
func newHarness() *harness {
	cfg := config.Default()
	cfg.Docker.HelperImage = testHelperImage
	return &harness{f: fake.New(), cfg: cfg}
}

// deps returns the command's dependencies; read them afresh after
// changing h.cfg.
func (h *harness) deps() Deps {
	return Deps{Config: h.cfg, Engine: h.f, Stdout: io.Discard, Caches: cache.New(h.cfg.Cache, h.f, nil, zap.NewNop())}
}

// liveKey is the job startLiveJob starts.
var liveKey = naming.JobKey{Runner: "t3st", Instance: "127.0.0.1:42891", ProjectID: 1001, Slot: 2, JobID: 22961}

// startLiveJob gives the engine a job that is running, as prepare leaves
// it: its builds volume, its network, and its helper and build containers
// on that network, made just now.
func startLiveJob(t *testing.T, f *fake.Engine) {
	t.Helper()
	ctx := context.Background()
	meta := naming.JobMeta{PipelineID: 1461, RunnerID: "12", TimeoutSeconds: 3600, Created: time.Now()}
	network, helper := liveKey.Name(naming.KindNetwork), liveKey.Name(naming.KindHelper)
	f.AddImage("golang:1.26", testHelperImage)
	for _, err := range []error{
		f.EnsureVolume(ctx, engine.VolumeSpec{Name: liveKey.Name(naming.KindBuilds), Labels: liveKey.Labels(naming.KindBuilds, meta)}),
		f.CreateNetwork(ctx, engine.NetworkSpec{Name: network, Labels: liveKey.Labels(naming.KindNetwork, meta)}),
		f.CreateContainer(ctx, engine.ContainerSpec{Name: helper, Image: testHelperImage, NetworkMode: network, Labels: liveKey.Labels(naming.KindHelper, meta)}),
		f.CreateContainer(ctx, engine.ContainerSpec{Name: liveKey.Name(naming.KindBuild), Image: "golang:1.26", NetworkMode: "container:" + helper, Labels: liveKey.Labels(naming.KindBuild, meta)}),
		f.StartContainer(ctx, helper),
		f.StartContainer(ctx, liveKey.Name(naming.KindBuild)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// writeFile writes content to a new file in a temp dir.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// syntheticCgroups is a cgroup v2 tree in a temp dir (the kernel's files
// written by hand), so doctor reads a real cgroup.Host.
func syntheticCgroups(t *testing.T) *cgroup.Host {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"cgroup.subtree_control", "warmcache/cgroup.subtree_control"} {
		writeAt(t, filepath.Join(root, f), "")
	}
	return &cgroup.Host{Unified: true, Root: root}
}

func writeAt(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
