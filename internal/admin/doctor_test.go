package admin

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/limits"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/naming"
)

func TestDoctor(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		h := newHarness()
		h.f.AddImage(h.cfg.Docker.DefaultImage)
		h.f.AddImage(testHelperImage)
		var out bytes.Buffer
		d := h.deps()
		d.Stdout = &out
		if err := Doctor(context.Background(), d); err != nil {
			t.Fatalf("Doctor: %v\n%s", err, out.String())
		}
		want := "ok   config: valid\n" +
			"ok   engine: Docker fake at unix:///var/run/docker.sock, API fake\n" +
			"ok   storage driver: overlay2\n" +
			"ok   cgroups: version 1, cgroupfs driver\n" +
			"ok   limits: per container only: the engine is not local, so jobs get no cgroup of their own\n" +
			"ok   image debian:bookworm: present\n" +
			"ok   image " + testHelperImage + ": present\n" +
			"warn disk: the engine did not say where its data root is\n" +
			"ok   stage agent: not with a remote engine: one docker exec per stage\n" +
			"ok   networks: 0 job networks\n" +
			"ok   caches: 0 volumes, 0 B measured\n"
		if out.String() != want {
			t.Errorf("output:\n%s\nwant\n%s", out.String(), want)
		}
	})
	t.Run("engine down", func(t *testing.T) {
		h := newHarness()
		h.f.FailNext(fake.MethodPing, errors.New("dial unix /var/run/docker.sock: connect: no such file or directory"))
		var out bytes.Buffer
		d := h.deps()
		d.Stdout = &out
		err := Doctor(context.Background(), d)
		if err == nil || err.Error() != "doctor: 1 checks failed" {
			t.Errorf("Doctor = %v", err)
		}
		if !strings.Contains(out.String(), "FAIL engine: dial unix /var/run/docker.sock: connect: no such file or directory: start dockerd, or fix docker.host (unix:///var/run/docker.sock)\n") {
			t.Errorf("output:\n%s", out.String())
		}
	})
	t.Run("image missing under pull policy never", func(t *testing.T) {
		h := newHarness()
		h.cfg.Docker.PullPolicy = []string{"never"}
		var out bytes.Buffer
		d := h.deps()
		d.Stdout = &out
		if err := Doctor(context.Background(), d); err == nil {
			t.Error("Doctor passed with the default image missing and pulls disabled")
		}
		if !strings.Contains(out.String(), "FAIL image debian:bookworm: ") || !strings.Contains(out.String(), "load it on this host (docker load) or allow a pull policy that fetches it") {
			t.Errorf("output:\n%s", out.String())
		}
	})
}

// Doctor counts the job networks against Docker's default address pools,
// and those with no container of their job left.
func TestDoctorNetworks(t *testing.T) {
	for _, tc := range []struct {
		others int
		want   string
	}{
		{0, "ok   networks: 1 job networks\n"},
		{2, "ok   networks: 3 job networks; 2 with no container left (the reaper removes them once older than reap.grace)\n"},
		{19, "warn networks: 20 job networks; Docker's default address pools hold about 30: add default-address-pools to /etc/docker/daemon.json; 19 with no container left (the reaper removes them once older than reap.grace)\n"},
	} {
		h := newHarness()
		startLiveJob(t, h.f)
		for i := range tc.others {
			key := naming.JobKey{Runner: "r", Instance: "x", ProjectID: 1, JobID: int64(100 + i)}
			h.f.AddNetwork(key.Name(naming.KindNetwork), key.Labels(naming.KindNetwork, naming.JobMeta{Created: time.Now()}))
		}
		var out bytes.Buffer
		d := h.deps()
		d.Stdout = &out
		_ = Doctor(context.Background(), d) // the images are missing: not what this test is about
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("%d other networks: output\n%s\nwant the line %q", tc.others, out.String(), tc.want)
		}
	}
}

// TestDoctorLimits: doctor says what a job gets by default, divided by the
// configured number of concurrent jobs.
func TestDoctorLimits(t *testing.T) {
	h := newHarness()
	h.cfg.Limits.ConcurrentJobs = 2
	h.f.AddImage(h.cfg.Docker.DefaultImage, testHelperImage)
	var out bytes.Buffer
	d := h.deps()
	d.Stdout = &out
	d.Cgroups = syntheticCgroups(t)
	if err := Doctor(context.Background(), d); err != nil {
		t.Fatalf("Doctor: %v\n%s", err, out.String())
	}
	cpus, mem := d.Cgroups.Capacity()
	share := limits.DefaultShare(limits.Host{NanoCPUs: cpus, Memory: mem}, 2)
	want := "ok   limits: a job's default share is " + limits.CPUs(share.NanoCPUs) + " and " + limits.MiB(share.Memory) +
		" (" + limits.CPUs(cpus) + ", " + limits.MiB(mem) + " / limits.concurrent_jobs = 2)\n"
	if !strings.Contains(out.String(), want) || share.NanoCPUs*2 > cpus || share.NanoCPUs == 0 {
		t.Errorf("doctor output lacks %q:\n%s", want, out.String())
	}
}

// TestDoctorCgroupNotPermitted: where the cgroup tree may not be written
// (a non-root runner, rootless Docker), doctor says up front that jobs get
// no cgroup of their own. sysfs stands in for the tree: the kernel refuses
// a new directory there, to root too.
func TestDoctorCgroupNotPermitted(t *testing.T) {
	h := newHarness()
	h.f.AddImage(h.cfg.Docker.DefaultImage, testHelperImage)
	d := h.deps()
	d.Cgroups = &cgroup.Host{Unified: true, Root: "/sys"}
	var out bytes.Buffer
	d.Stdout = &out
	_ = Doctor(context.Background(), d)
	if !strings.Contains(out.String(), "warn limits: jobs get no cgroup of their own (mkdir /sys/doctor-probe: ") {
		t.Errorf("doctor does not warn of the unwritable tree:\n%s", out.String())
	}
}

// TestDoctorChecksTokenFiles: doctor reads every token file as prepare
// will and fails for one that would fail every job, never showing a token.
func TestDoctorChecksTokenFiles(t *testing.T) {
	h := newHarness()
	h.f.AddImage(h.cfg.Docker.DefaultImage, testHelperImage)
	good := writeFile(t, "good", "svc-token-0123456789\n")
	short := writeFile(t, "short", "abc\n")
	h.cfg.Env.Tokens = []config.Token{
		{Host: "git.corp.example", Login: "svc", TokenFile: good},
		{Host: "npm.corp.example", Login: "svc", TokenFile: short},
	}
	var out strings.Builder
	d := h.deps()
	d.Stdout = &out
	err := Doctor(context.Background(), d)
	if err == nil || err.Error() != "doctor: 1 checks failed" {
		t.Errorf("Doctor = %v", err)
	}
	for _, want := range []string{
		"ok   env.token[0] (git.corp.example): token file " + good + " is readable\n",
		"FAIL env.token[1] (npm.corp.example): the token in " + short + " is shorter than 8 characters: every prepare would fail\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "svc-token-0123456789") {
		t.Errorf("doctor showed a token:\n%s", out.String())
	}
}
