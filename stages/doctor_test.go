package stages

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/runtime/fake"
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
