package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/limits"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

func TestLastStepStage(t *testing.T) {
	script := job.Step{Name: "script", Script: []string{"make"}}
	after := job.Step{Name: "after_script", Script: []string{"echo done"}}
	emptyAfter := job.Step{Name: "after_script"}
	release := job.Step{Name: "release", Script: []string{"publish"}}
	for _, tc := range []struct {
		stage  string
		failed bool
		steps  []job.Step
		want   bool
	}{
		{"build_script", false, []job.Step{script}, true},
		{"build_script", false, []job.Step{script, emptyAfter}, true},
		{"build_script", false, []job.Step{script, after}, false},
		{"build_script", true, []job.Step{script, after}, false},
		{"after_script", false, []job.Step{script, after}, true},
		{"after_script", true, []job.Step{script, after}, true},
		{"build_script", false, []job.Step{script, release}, false},
		{"step_release", false, []job.Step{script, release}, true},
		// The runner stops at the first failing step.
		{"build_script", true, []job.Step{script, release}, true},
		{"build_script", false, nil, true},
		{"archive_cache", false, []job.Step{script}, false},
		{"get_sources", true, []job.Step{script}, false},
	} {
		if got := lastStepStage(tc.stage, tc.failed, tc.steps); got != tc.want {
			t.Errorf("lastStepStage(%s, failed=%v, %d steps) = %v, want %v", tc.stage, tc.failed, len(tc.steps), got, tc.want)
		}
	}
}

// syntheticCgroups is a cgroup v2 tree in a temp dir (the kernel's files
// written by hand), so the stages run against a real cgroup.Host.
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

// TestLimitsThroughTheStages: prepare puts both containers under the job's
// cgroup with their limits; a step that fails while the OOM counter rises
// says so; the usage line follows after_script; cleanup removes the cgroup.
func TestLimitsThroughTheStages(t *testing.T) {
	h := newHarness(t, func(j map[string]any) {
		j["services"] = []any{map[string]any{"name": "postgres:16"}, map[string]any{"name": "redis:7"}}
	})
	h.cfg.Limits.Job = limits.JobSet{CPUs: "1.5", Memory: "512m", PidsLimit: 128}
	h.cfg.Limits.Helper = limits.Set{CPUs: "0.5"}
	h.cfg.Limits.Services = limits.Set{Memory: "256m", ShmSize: "128m"}
	h.cfg.Services.WaitTimeout = 0
	h.f.AddImage("golang:1.26", testHelperImage, "postgres:16", "redis:7")
	d := h.deps()
	d.Host = host.New(h.f, syntheticCgroups(t))
	if err := Prepare(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.stderr.String(), "Resource limits for this job: 1.5 CPUs, 512 MiB memory, 128 processes\n") {
		t.Errorf("job log:\n%s", h.stderr)
	}
	parent := "/warmcache/" + sampleKey.Base()
	dir := filepath.Join(d.cgroups().Root, parent)
	if b, err := os.ReadFile(filepath.Join(dir, "memory.max")); err != nil || string(b) != "536870912" {
		t.Errorf("memory.max = %q, %v", b, err)
	}
	build, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
	helper, _ := h.f.Container(sampleKey.Name(naming.KindHelper))
	if s := build.Spec; s.CgroupParent != parent || s.Memory != 512<<20 || s.NanoCPUs != 1.5e9 || s.PidsLimit != 128 {
		t.Errorf("build spec limits = %+v", s)
	}
	if s := helper.Spec; s.CgroupParent != parent || s.NanoCPUs != 5e8 || s.Memory != 0 {
		t.Errorf("helper spec limits = %+v", s)
	}
	for i := range 2 {
		svc, ok := h.f.Container(sampleKey.ServiceName(i))
		if s := svc.Spec; !ok || s.CgroupParent != parent || s.Memory != 256<<20 || s.ShmSize != 128<<20 {
			t.Errorf("service %d spec limits = %+v", i, s)
		}
	}

	// The kernel's accounting at the moment the step's allocation is killed.
	writeAt(t, filepath.Join(dir, "memory.stat"), "anon 1\n")
	writeAt(t, filepath.Join(dir, "cpu.stat"), "usage_usec 4200000\nthrottled_usec 1500000\n")
	writeAt(t, filepath.Join(dir, "memory.peak"), "536870912\n")
	writeAt(t, filepath.Join(dir, "memory.events"), "oom_kill 0\n")
	h.f.SetExec(func(name string, cmd []string, stdin []byte) (engine.Exit, string, string) {
		writeAt(t, filepath.Join(dir, "memory.events"), "oom_kill 1\n")
		return engine.Exit{Code: 137}, "", "Killed\n"
	})
	h.stderr.Reset()
	err := Run(context.Background(), d, writeFile(t, "script", "x"), "build_script")
	var bf *protocol.BuildFailure
	if !errors.As(err, &bf) || bf.Code != 137 || bf.Error() != "out of memory: limit 512 MiB, peak 512 MiB" {
		t.Fatalf("Run = %v, want an out-of-memory build failure with code 137", err)
	}
	if strings.Contains(h.stderr.String(), "Job resources used") {
		t.Errorf("usage line before after_script:\n%s", h.stderr)
	}

	// A second failure without a new kill is an ordinary one.
	h.f.SetExec(func(string, []string, []byte) (engine.Exit, string, string) { return engine.Exit{Code: 3}, "", "" })
	err = Run(context.Background(), d, writeFile(t, "script", "x"), "after_script")
	if !errors.As(err, &bf) || bf.Code != 3 || bf.Reason != "" {
		t.Errorf("after_script = %v, want a plain failure with code 3", err)
	}
	want := "Job resources used: peak memory 512 MiB of 512 MiB, CPU 4.2s, throttled 1.5s, 1 process(es) OOM-killed\n"
	if !strings.HasSuffix(h.stderr.String(), want) {
		t.Errorf("job log ends\n%s\nwant %q", h.stderr, want)
	}

	writeAt(t, filepath.Join(dir, "cgroup.procs"), "")
	if err := Cleanup(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the job's cgroup outlived cleanup: %v", err)
	}
}

// TestCgroupNotPermitted: where the cgroup tree may not be written (a
// non-root runner, rootless Docker), prepare warns once and the job goes on
// with each container's own limits (doctor says so up front: see package
// admin). sysfs stands in for the tree: the kernel refuses a new directory
// there, to root too.
func TestCgroupNotPermitted(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Limits.Job = limits.JobSet{CPUs: "1", Memory: "512m"}
	h.f.AddImage(h.cfg.Docker.DefaultImage, testHelperImage)
	d := h.deps()
	d.Host = host.New(h.f, &cgroup.Host{Unified: true, Root: "/sys"})
	if err := Prepare(context.Background(), d); err != nil {
		t.Fatalf("Prepare = %v, want the job to go on without a cgroup", err)
	}
	if n := strings.Count(h.stderr.String(), "WARNING: job-wide cgroup limits are not supported here"); n != 1 {
		t.Errorf("%d warnings in the job log, want 1:\n%s", n, h.stderr)
	}
	build, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
	if s := build.Spec; s.CgroupParent != "" || s.Memory != 512<<20 || s.NanoCPUs != 1e9 {
		t.Errorf("build spec = parent %q, memory %d, cpus %d; want no parent and the job's limits", s.CgroupParent, s.Memory, s.NanoCPUs)
	}

	// The steps find no cgroup to report on: no usage line, and no
	// warning per step in the driver's log either.
	core, logs := observer.New(zap.InfoLevel)
	d.Log = zap.New(core)
	h.stderr.Reset()
	if err := Run(context.Background(), d, writeFile(t, "script", "x"), "build_script"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if logs.Len() != 0 || strings.Contains(h.stderr.String(), "Job resources used") {
		t.Errorf("a step without a cgroup logged %v; job log:\n%s", logs.All(), h.stderr)
	}
}

// TestStepStages: the job response's steps as run stages.
func TestStepStages(t *testing.T) {
	steps := []job.Step{{Name: "script"}, {Name: "release"}, {Name: "after_script", Script: []string{"x"}}}
	if got, want := stepStages(steps), []string{"build_script", "step_release"}; !slices.Equal(got, want) {
		t.Errorf("stepStages = %q, want %q", got, want)
	}
}
