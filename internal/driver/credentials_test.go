package driver

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/credentials"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// sampleJobToken is the job token of sampleJob.
const sampleJobToken = "glcbt-NGMyZWMyNmI1ODdmODJk"

// untar lists the files of a tar stream: name, mode and content.
func untar(t *testing.T, data string) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(strings.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[hdr.Name] = fmt.Sprintf("%o %s", hdr.Mode, b)
	}
}

// TestPrepareDeliversCredentials: the job token and a service token go
// into a tmpfs volume mounted in both containers, through the stdin of
// one exec; the containers' environment points the tools at them and
// holds no secret.
func TestPrepareDeliversCredentials(t *testing.T) {
	for _, tc := range []struct {
		name, user, deliverTo string
	}{
		{"root job: the helper writes them", "", "helper"},
		{"non-root job: its user writes its own", "1000:1000", "build"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.cfg.Env.JobToken = true
			h.cfg.Env.HTTPSProxy = "http://proxy.example:3128"
			tokenFile := writeFile(t, "token", "svc-token-0123456789\n")
			h.cfg.Env.Tokens = []config.Token{{Host: "git.corp.example", Login: "svc", TokenFile: tokenFile}}
			h.f.SetImageInfo("golang:1.26", engine.ImageInfo{User: tc.user})
			execs := recordExecs(h, engine.Exit{})
			if err := Prepare(context.Background(), h.deps()); err != nil {
				t.Fatalf("Prepare: %v", err)
			}

			secrets := sampleKey.Name(naming.KindSecrets)
			if v, ok := h.f.Volume(secrets); !ok || !v.Tmpfs {
				t.Fatalf("secrets volume %s: %+v, exists %v; want a tmpfs", secrets, v, ok)
			}
			for _, kind := range []naming.Kind{naming.KindHelper, naming.KindBuild} {
				c, _ := h.f.Container(sampleKey.Name(kind))
				if !slices.Contains(c.Spec.Mounts, engine.Mount{Volume: secrets, Target: "/run/warmcache", NoCopy: true}) {
					t.Errorf("%s mounts = %+v, want the secrets volume at /run/warmcache", kind, c.Spec.Mounts)
				}
				for _, want := range []string{"NETRC=/run/warmcache/netrc", "HTTPS_PROXY=http://proxy.example:3128", "GOPRIVATE=127.0.0.1"} {
					if !slices.Contains(c.Spec.Env, want) {
						t.Errorf("%s env lacks %s: %q", kind, want, c.Spec.Env)
					}
				}
				spec := fmt.Sprintf("%+v", c.Spec)
				for _, secret := range []string{sampleJobToken, "svc-token-0123456789"} {
					if strings.Contains(spec, secret) {
						t.Errorf("%s spec holds a secret: %s", kind, spec)
					}
				}
			}

			var delivered []execRecord
			for _, e := range *execs {
				if slices.Equal(e.cmd, deliverCommand) {
					delivered = append(delivered, e)
				}
			}
			if len(delivered) != 1 || delivered[0].name != sampleKey.Name(naming.Kind(tc.deliverTo)) {
				t.Fatalf("deliveries = %+v, want one into the %s", delivered, tc.deliverTo)
			}
			files := untar(t, delivered[0].stdin)
			wantNetrc := "600 machine 127.0.0.1:42891 login gitlab-ci-token password " + sampleJobToken + "\n" +
				"machine 127.0.0.1 login gitlab-ci-token password " + sampleJobToken + "\n" +
				"machine git.corp.example login svc password svc-token-0123456789\n"
			if files["netrc"] != wantNetrc {
				t.Errorf("netrc = %q, want %q", files["netrc"], wantNetrc)
			}
			if !strings.Contains(files["git-credentials"], "http://gitlab-ci-token:"+sampleJobToken+"@127.0.0.1:42891\n") {
				t.Errorf("git-credentials = %q", files["git-credentials"])
			}
			if len(files) != 2 {
				t.Errorf("files = %v, want netrc and git-credentials", files)
			}
		})
	}
}

// TestPrepareBadTokenFile: a token file that cannot be read fails prepare
// naming the key and the file, before any container exists.
func TestPrepareBadTokenFile(t *testing.T) {
	h := newHarness(t, nil)
	missing := filepath.Join(t.TempDir(), "gone")
	h.cfg.Env.Tokens = []config.Token{{Host: "git.corp.example", Login: "svc", TokenFile: missing}}
	err := Prepare(context.Background(), h.deps())
	want := "env.token[0] (git.corp.example): reading token file: open " + missing + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("Prepare = %v, want %q", err, want)
	}
	if slices.Contains(methods(h.f, ""), "CreateContainer") {
		t.Error("containers were created")
	}
}

// TestPrepareDeliveryFails: an image without tar fails prepare with a
// line saying what the image needs.
func TestPrepareDeliveryFails(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Env.JobToken = true
	h.f.SetExec(func(name string, cmd []string, stdin []byte) (engine.Exit, string, string) {
		return engine.Exit{Code: 127}, "", "sh: tar: not found\n"
	})
	err := Prepare(context.Background(), h.deps())
	want := "writing credential files into /run/warmcache of " + sampleKey.Name(naming.KindHelper) + " (the image needs sh and tar): exit code 127: sh: tar: not found"
	if err == nil || err.Error() != want {
		t.Fatalf("Prepare = %v, want %q", err, want)
	}
}

// TestRunMasksSecrets: what a stage prints of the job token, a service
// token or a masked variable reaches the job log as [MASKED].
func TestRunMasksSecrets(t *testing.T) {
	h := prepared(t)
	h.cfg.Env.Tokens = []config.Token{{Host: "git.corp.example", Login: "svc", TokenFile: writeFile(t, "token", "svc-token-0123456789")}}
	h.f.SetExec(func(name string, cmd []string, stdin []byte) (engine.Exit, string, string) {
		return engine.Exit{}, "token " + sampleJobToken + " svc svc-token-0123456789 end", "masked var s3cr3t-value-123 and a prefix svc-tok"
	})
	script := writeFile(t, "script", "echo\n")
	if err := Run(context.Background(), h.deps(), script, "build_script"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := h.stdout.String(), "token [MASKED] svc [MASKED] end"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	// A prefix of a secret at the very end is flushed as it is.
	if got, want := h.stderr.String(), "masked var [MASKED] and a prefix svc-tok"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

// TestRunMasksDeliveredTokenAfterRotation: a token rotated on the runner
// host after prepare is masked in later stages in both versions: the new
// one from the file, the old one from what the job was given.
func TestRunMasksDeliveredTokenAfterRotation(t *testing.T) {
	h := newHarness(t, nil)
	root := t.TempDir()
	h.f.SetVolumeRoot(root)
	tokenFile := writeFile(t, "token", "old-token-0123456789")
	h.cfg.Env.Tokens = []config.Token{{Host: "git.corp.example", Login: "svc", TokenFile: tokenFile}}
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	// What the delivery exec (a no-op in the fake) writes into the tmpfs.
	netrc := filepath.Join(root, sampleKey.Name(naming.KindSecrets), credentials.NetrcFile)
	if err := os.WriteFile(netrc, []byte("machine git.corp.example login svc password old-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("new-token-9876543210\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.stdout.Reset()
	h.f.SetExec(func(name string, cmd []string, stdin []byte) (engine.Exit, string, string) {
		return engine.Exit{}, "old old-token-0123456789 new new-token-9876543210", ""
	})
	if err := Run(context.Background(), h.deps(), writeFile(t, "script", "echo\n"), "build_script"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := h.stdout.String(), "old [MASKED] new [MASKED]"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
}

// TestPrepareWritesIntoTmpfs: where the secrets volume's mountpoint is a
// tmpfs on this host, a root job's files are written straight into it,
// mode 0600, with no exec; a file already there is never followed or
// overwritten. Needs root (to mount a tmpfs), as CI runs.
func TestPrepareWritesIntoTmpfs(t *testing.T) {
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mounting a tmpfs for the test (needs root): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })

	h := newHarness(t, nil)
	h.f.SetVolumeRoot(root)
	h.cfg.Env.JobToken = true
	execs := recordExecs(h, engine.Exit{})
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	for _, e := range *execs {
		if slices.Equal(e.cmd, deliverCommand) {
			t.Errorf("credentials delivered by exec into %s, want them written into the tmpfs", e.name)
		}
	}
	netrc := filepath.Join(root, sampleKey.Name(naming.KindSecrets), credentials.NetrcFile)
	fi, err := os.Lstat(netrc)
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("netrc: %v, mode %v; want a file of mode 0600", err, fi)
	}
	if data, _ := os.ReadFile(netrc); !strings.Contains(string(data), "password "+sampleJobToken+"\n") {
		t.Errorf("netrc = %q", data)
	}

	// A second delivery finds the file there: it fails and leaves it be.
	_, err = writeIntoTmpfs(context.Background(), h.deps().Host, sampleKey.Name(naming.KindSecrets), []credentials.File{{Name: credentials.NetrcFile, Content: []byte("other")}})
	if err == nil {
		t.Error("writeIntoTmpfs over an existing file: no error")
	}
	if data, _ := os.ReadFile(netrc); strings.Contains(string(data), "other") {
		t.Errorf("an existing file was overwritten: %q", data)
	}
}

// TestStageErrorMasked: the text of a stage's error, which the entry
// point prints to the job log, has the job's secrets masked; what the
// error is (a system failure here) is kept.
func TestStageErrorMasked(t *testing.T) {
	h := prepared(t)
	h.f.FailNext(fake.MethodExec, fmt.Errorf("engine says: no such image registry.example/%s/app: %w", sampleJobToken, engine.ErrNotFound))
	err := Run(context.Background(), h.deps(), writeFile(t, "script", "echo\n"), "build_script")
	if err == nil || strings.Contains(err.Error(), sampleJobToken) || !strings.Contains(err.Error(), "registry.example/[MASKED]/app") {
		t.Fatalf("Run error = %v, want the token masked", err)
	}
	if !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("masking lost what the error is: %v", err)
	}
	var bf *protocol.BuildFailure
	if errors.As(err, &bf) {
		t.Errorf("a system failure became a build failure: %v", err)
	}
}
