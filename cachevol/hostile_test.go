package cachevol

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A job controls what sits at the stamp's path; the host-side reader must
// neither follow it, block on it nor fail the next job because of it.
func TestReadStampRefusesHostileFiles(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(secret, []byte(`{"size_bytes":42}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		plant func(path string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"symlink to a host file", func(p string) error { return os.Symlink(secret, p) }},
		{"symlink to /dev/zero", func(p string) error { return os.Symlink("/dev/zero", p) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"huge file", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat(" ", 1<<20)+"{}"), 0o644) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if err := tt.plant(filepath.Join(root, StampFile)); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { _, err := ReadStamp(root); done <- err }()
			select {
			case err := <-done:
				if err == nil {
					t.Errorf("ReadStamp accepted a planted %s", tt.name)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("ReadStamp blocked on a planted %s", tt.name)
			}
		})
	}
}

func TestReadStampWithoutMountpoint(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile(StampFile, []byte(`{"size_bytes":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStamp(""); err == nil {
		t.Error("ReadStamp(\"\") read the working directory's stamp")
	}
}

func TestEnvRewritesOnlyRootPaths(t *testing.T) {
	p := Profile{Env: map[string]string{
		"A": "/opt/root/cache",
		"B": "/root/x:/srv/root/y:/root/z",
		"C": "-Dk=/root/m2 -Dother=/home/root/q",
	}}
	got := strings.Join(Env([]Profile{p}, true), "\n")
	want := "A=/opt/root/cache\n" +
		"B=/var/cache/warmcache/root/x:/srv/root/y:/var/cache/warmcache/root/z\n" +
		"C=-Dk=/var/cache/warmcache/root/m2 -Dother=/home/root/q"
	if got != want {
		t.Errorf("Env:\n got %q\nwant %q", got, want)
	}
}

func TestFormattingEdges(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if got := Ago(now.Add(3*time.Second), now); got != "0s ago" {
		t.Errorf("Ago(future) = %q, want 0s ago", got)
	}
	for n, want := range map[int64]string{1048575: "1.0 MiB", 1048524: "1023.9 KiB", 1<<30 - 1: "1.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
