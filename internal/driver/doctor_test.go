package driver

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
)

func TestDoctor(t *testing.T) {
	t.Run("healthy", func(t *testing.T) {
		h := newHarness(t, nil)
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
			"ok   networks: 0 job networks\n" +
			"ok   caches: 0 volumes, 0 B measured\n"
		if out.String() != want {
			t.Errorf("output:\n%s\nwant\n%s", out.String(), want)
		}
	})
	t.Run("engine down", func(t *testing.T) {
		h := newHarness(t, nil)
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
		h := newHarness(t, nil)
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
		h := newHarness(t, nil)
		if err := Prepare(context.Background(), h.deps()); err != nil { // a live job
			t.Fatal(err)
		}
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
