package host

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHostReadFile(t *testing.T) {
	h, f, _ := localHost(t)
	mp := volume(t, f, "layer")
	write(t, mp, map[string]string{"steps": "ok build\n"})
	if data, err := h.ReadFile(t.Context(), "layer", "steps"); err != nil || string(data) != "ok build\n" {
		t.Errorf("ReadFile = %q, %v; want %q", data, err, "ok build\n")
	}
	if data, err := h.ReadFile(t.Context(), "layer", "missing"); !errors.Is(err, fs.ErrNotExist) || data != nil {
		t.Errorf("ReadFile of a missing file = %q, %v; want not exist", data, err)
	}
}

// A job may control what sits at the name ReadFile reads: it must neither
// follow it nor block on it.
func TestHostReadFileRefusesHostileFiles(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
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
		{"character device", mknodNull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "character device" {
				canMknod(t)
			}
			h, f, _ := localHost(t)
			mp := volume(t, f, "vol")
			if err := tt.plant(filepath.Join(mp, "netrc")); err != nil {
				t.Fatal(err)
			}
			var (
				data []byte
				err  error
			)
			within(t, "ReadFile", func() { data, err = h.ReadFile(t.Context(), "vol", "netrc") })
			if err == nil || data != nil {
				t.Errorf("ReadFile accepted a planted %s: %q, %v", tt.name, data, err)
			}
		})
	}
}

// TestHostReadFileBounded: what ReadFile returns of a huge file a job
// wrote is at most maxReadBytes.
func TestHostReadFileBounded(t *testing.T) {
	h, f, _ := localHost(t)
	mp := volume(t, f, "vol")
	if err := os.WriteFile(filepath.Join(mp, "big"), make([]byte, maxReadBytes+100), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := h.ReadFile(t.Context(), "vol", "big"); err != nil || len(data) != maxReadBytes {
		t.Errorf("ReadFile of a huge file = %d bytes, %v; want %d", len(data), err, maxReadBytes)
	}
}

func TestHostAppendLine(t *testing.T) {
	h, f, _ := localHost(t)
	mp := volume(t, f, "layer")
	for _, line := range []string{"ok build", "fail test"} {
		if err := h.AppendLine(t.Context(), "layer", "steps", line); err != nil {
			t.Fatalf("AppendLine: %v", err)
		}
	}
	if data, err := h.ReadFile(t.Context(), "layer", "steps"); err != nil || string(data) != "ok build\nfail test\n" {
		t.Errorf("ReadFile after AppendLine = %q, %v", data, err)
	}
	if fi, err := os.Lstat(filepath.Join(mp, "steps")); err != nil || fi.Mode() != 0o600 {
		t.Errorf("steps: %v, %v; want -rw-------", fi.Mode(), err)
	}
}

// diskDir is a directory that is not a tmpfs: the test's temp dir, or
// /var/tmp where the temp dir is a tmpfs.
func diskDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if !isTmpfs(t, dir) {
		return dir
	}
	dir, err := os.MkdirTemp("/var/tmp", "host-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if isTmpfs(t, dir) {
		t.Fatalf("%s and the test's temp dir are tmpfs: set TMPDIR to a directory on disk", dir)
	}
	return dir
}

func isTmpfs(t *testing.T, dir string) bool {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Type == unix.TMPFS_MAGIC
}

// mountTmpfs mounts a small tmpfs over dir for the rest of the test.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("mounting a tmpfs on %s as root: %v", dir, err)
		}
		t.Skipf("NOT TESTED: mounting a tmpfs needs root (CAP_SYS_ADMIN), and this test runs as uid %d (%v); run the tests as root, as make test and CI do", os.Geteuid(), err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
}

// TestWriteIntoTmpfsNotTmpfs: a volume on disk is not written; the caller
// is told to deliver the files another way.
func TestWriteIntoTmpfsNotTmpfs(t *testing.T) {
	h, f, _ := localHostIn(t, diskDir(t))
	mp := volume(t, f, "secrets")
	ok, err := h.WriteIntoTmpfs(t.Context(), "secrets", []File{{Name: "netrc", Content: []byte("machine x")}})
	if ok || err != nil {
		t.Errorf("WriteIntoTmpfs on disk = %v, %v; want false, nil", ok, err)
	}
	if got := tree(t, mp); len(got) != 0 {
		t.Errorf("volume on disk holds %q", got)
	}
	// Nor a volume that does not exist.
	if ok, err := h.WriteIntoTmpfs(t.Context(), "missing", []File{{Name: "netrc"}}); ok || err != nil {
		t.Errorf("WriteIntoTmpfs on a missing volume = %v, %v; want false, nil", ok, err)
	}
}

func TestWriteIntoTmpfs(t *testing.T) {
	h, f, _ := localHost(t)
	mp := volume(t, f, "secrets")
	mountTmpfs(t, mp)
	files := []File{{Name: "netrc", Content: []byte("machine gitlab.example.com\n")}, {Name: "token", Content: []byte("s3cret")}}
	ok, err := h.WriteIntoTmpfs(t.Context(), "secrets", files)
	if !ok || err != nil {
		t.Fatalf("WriteIntoTmpfs on a tmpfs = %v, %v; want true, nil", ok, err)
	}
	for _, file := range files {
		p := filepath.Join(mp, file.Name)
		if data, err := os.ReadFile(p); err != nil || !bytes.Equal(data, file.Content) {
			t.Errorf("%s holds %q, %v; want %q", file.Name, data, err, file.Content)
		}
		if fi, err := os.Lstat(p); err != nil || fi.Mode() != 0o600 {
			t.Errorf("%s: %v, %v; want -rw-------", file.Name, fi.Mode(), err)
		}
	}

	// A file that exists is not overwritten.
	ok, err = h.WriteIntoTmpfs(t.Context(), "secrets", []File{{Name: "netrc", Content: []byte("other")}})
	if ok || !errors.Is(err, fs.ErrExist) {
		t.Errorf("WriteIntoTmpfs over an existing file = %v, %v; want false, file exists", ok, err)
	}
	if data, err := os.ReadFile(filepath.Join(mp, "netrc")); err != nil || !bytes.Equal(data, files[0].Content) {
		t.Errorf("netrc now holds %q, %v", data, err)
	}
}

// A link planted at a file's name (say, by an image's entrypoint) is never
// followed: the delivery fails, and nothing outside the tmpfs changes.
func TestWriteIntoTmpfsRefusesPlantedLink(t *testing.T) {
	elsewhere := t.TempDir()
	hostFile := filepath.Join(elsewhere, "host-file")
	if err := os.WriteFile(hostFile, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target string
	}{
		{"symlink to a host file", hostFile},
		{"symlink to a host file yet to exist", filepath.Join(elsewhere, "new-file")},
		{"symlink to a host directory", elsewhere},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f, _ := localHost(t)
			mp := volume(t, f, "secrets")
			mountTmpfs(t, mp)
			if err := os.Symlink(tt.target, filepath.Join(mp, "netrc")); err != nil {
				t.Fatal(err)
			}
			ok, err := h.WriteIntoTmpfs(t.Context(), "secrets", []File{{Name: "netrc", Content: []byte("secret")}})
			if ok || err == nil {
				t.Errorf("WriteIntoTmpfs through a planted link = %v, %v; want an error", ok, err)
			}
			if target, err := os.Readlink(filepath.Join(mp, "netrc")); err != nil || target != tt.target {
				t.Errorf("netrc -> %q, %v; want the link left as it was", target, err)
			}
			if data, err := os.ReadFile(hostFile); err != nil || string(data) != "host" {
				t.Errorf("host file now holds %q, %v", data, err)
			}
			if fi, err := os.Stat(hostFile); err != nil || fi.Mode() != 0o644 {
				t.Errorf("host file mode %v, %v; want -rw-r--r--", fi.Mode(), err)
			}
			names, err := os.ReadDir(elsewhere)
			if err != nil || len(names) != 1 || names[0].Name() != "host-file" {
				t.Errorf("outside the tmpfs: %v, %v", names, err)
			}
		})
	}
}
