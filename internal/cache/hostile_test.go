package cache

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
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

// Opening a device can act (a watchdog device, a tape rewinding), and
// opening a FIFO wakes whoever waits to write it: ReadStamp must look at a
// planted stamp without opening it, and still read a regular one.
func TestReadStampDoesNotOpenSpecialFiles(t *testing.T) {
	tests := []struct {
		name  string
		plant func(path string) error
	}{
		{"character device", mknodNull},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "character device" {
				canMknod(t)
			}
			root := t.TempDir()
			stamp := filepath.Join(root, StampFile)
			if err := tt.plant(stamp); err != nil {
				t.Fatal(err)
			}
			opened := watchOpens(t, root)
			var err error
			within(t, "ReadStamp", func() { _, err = ReadStamp(root) })
			if want := "stamp of " + root + " is not a regular file"; err == nil || err.Error() != want {
				t.Errorf("ReadStamp error = %v, want %q", err, want)
			}
			if names := opened(); len(names) != 0 {
				t.Errorf("ReadStamp opened %q", names)
			}

			// A regular stamp in its place reads as usual.
			if err := os.Remove(stamp); err != nil {
				t.Fatal(err)
			}
			want := Stamp{LastUsed: t0, SizeBytes: 3, Measured: t1, JobID: 9}
			if err := WriteStamp(root, want); err != nil {
				t.Fatal(err)
			}
			if got, err := ReadStamp(root); err != nil || got != want {
				t.Errorf("ReadStamp = %+v, %v; want %+v", got, err, want)
			}
		})
	}
}

// A job may replace WriteStamp's temporary file while root holds it open.
// Nothing root does next may reach through what the job put there.
func TestWriteStampSwappedTemp(t *testing.T) {
	root, elsewhere := t.TempDir(), t.TempDir()
	host := filepath.Join(elsewhere, "host-file")
	if err := os.WriteFile(host, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	aside := filepath.Join(elsewhere, "moved-temp")
	onOpen(t, root, func(p string) bool {
		if !strings.HasPrefix(filepath.Base(p), StampFile+".") {
			return false
		}
		swapIn(t, p, aside, func(p string) error { return os.Symlink(host, p) })
		return true
	})
	// The stamp now names the job's link, which no reader follows: only
	// the record is lost, as when a job writes the stamp itself.
	_ = WriteStamp(root, Stamp{LastUsed: t0})

	if data, err := os.ReadFile(host); err != nil || string(data) != "host" {
		t.Errorf("host file now holds %q, %v", data, err)
	}
	if fi, err := os.Stat(host); err != nil || fi.Mode() != 0o600 {
		t.Errorf("host file mode %v, %v; want -rw-------", fi.Mode(), err)
	}
	// The mode went to WriteStamp's own file, wherever the job put it.
	if fi, err := os.Stat(aside); err != nil || fi.Mode() != 0o644 {
		t.Errorf("WriteStamp's own file: mode %v, %v; want -rw-r--r--", fi.Mode(), err)
	}
}

// Whatever a job planted at the stamp's name is replaced, not written
// through: rename swaps the directory entry, link or not.
func TestWriteStampReplacesPlantedLink(t *testing.T) {
	elsewhere := t.TempDir()
	host := filepath.Join(elsewhere, "host-file")
	if err := os.WriteFile(host, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		target string
	}{
		{"symlink to a host file", host},
		{"symlink to a host file yet to exist", filepath.Join(elsewhere, "new-file")},
		{"symlink to a host directory", elsewhere},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.Symlink(tt.target, filepath.Join(root, StampFile)); err != nil {
				t.Fatal(err)
			}
			want := Stamp{LastUsed: t0, JobID: 3}
			if err := WriteStamp(root, want); err != nil {
				t.Fatalf("WriteStamp: %v", err)
			}
			if fi, err := os.Lstat(filepath.Join(root, StampFile)); err != nil || fi.Mode() != 0o644 {
				t.Errorf("stamp: %v, %v; want a regular file -rw-r--r--", fi.Mode(), err)
			}
			if got, err := ReadStamp(root); err != nil || got != want {
				t.Errorf("ReadStamp = %+v, %v; want %+v", got, err, want)
			}
			if names := dirNames(t, elsewhere); !slices.Equal(names, []string{"host-file"}) {
				t.Errorf("outside the volume: %q", names)
			}
			if data, err := os.ReadFile(host); err != nil || string(data) != "host" {
				t.Errorf("host file now holds %q, %v", data, err)
			}
			if fi, err := os.Stat(host); err != nil || fi.Mode() != 0o600 {
				t.Errorf("host file mode %v, %v; want -rw-------", fi.Mode(), err)
			}
		})
	}
}

// DirSize runs as root over job-written trees: it must not leave the
// volume, loop, or open anything but a directory.
func TestDirSizeStaysInVolume(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]int{"big": 1 << 20})
	tests := []struct {
		name  string
		plant func(root string) error
	}{
		{"symlink to a directory outside", func(root string) error {
			return os.Symlink(outside, filepath.Join(root, "d", "out"))
		}},
		{"symlink to / ", func(root string) error { return os.Symlink("/", filepath.Join(root, "d", "slash")) }},
		{"symlink loop", func(root string) error {
			return errors.Join(
				os.Symlink("loop-b", filepath.Join(root, "d", "loop-a")),
				os.Symlink("loop-a", filepath.Join(root, "d", "loop-b")),
				os.Symlink(".", filepath.Join(root, "d", "self")),
				os.Symlink("..", filepath.Join(root, "d", "up")))
		}},
		{"character device", func(root string) error { return mknodNull(filepath.Join(root, "d", "null")) }},
		{"fifo", func(root string) error { return syscall.Mkfifo(filepath.Join(root, "d", "fifo"), 0o644) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "character device" {
				canMknod(t)
			}
			root := t.TempDir()
			writeTree(t, root, map[string]int{"a": 10, "d/b": 20})
			if err := tt.plant(root); err != nil {
				t.Fatal(err)
			}
			opened := watchOpens(t, filepath.Join(root, "d"))
			var (
				n   int64
				err error
			)
			within(t, "DirSize", func() { n, err = DirSize(t.Context(), root) })
			if err != nil || n != 30 {
				t.Errorf("DirSize = %d, %v; want 30", n, err)
			}
			if names := opened(); len(names) != 0 {
				t.Errorf("DirSize opened %q", names)
			}
		})
	}
}

// A job can swap a directory for something else after DirSize listed it
// and before DirSize goes in: what it finds then is skipped, not followed,
// opened or blocked on.
func TestDirSizeSwappedEntries(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]int{"big": 1 << 20})
	tests := []struct {
		name  string
		plant func(path string) error
	}{
		{"symlink to a directory outside", func(p string) error { return os.Symlink(outside, p) }},
		{"symlink to itself", func(p string) error { return os.Symlink(".", p) }},
		{"character device", mknodNull},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"nothing (removed)", func(string) error { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "character device" {
				canMknod(t)
			}
			root, aside := t.TempDir(), t.TempDir()
			writeTree(t, root, map[string]int{"a/x": 10, "b/y": 10})
			// Whichever of a and b DirSize enters first, the other is
			// swapped just then.
			onOpen(t, root, func(p string) bool {
				var other string
				switch p {
				case filepath.Join(root, "a"):
					other = "b"
				case filepath.Join(root, "b"):
					other = "a"
				default:
					return false
				}
				swapIn(t, filepath.Join(root, other), filepath.Join(aside, other), tt.plant)
				return true
			})
			opened := watchOpens(t, root)
			var (
				n   int64
				err error
			)
			within(t, "DirSize", func() { n, err = DirSize(t.Context(), root) })
			if err != nil || n != 10 {
				t.Errorf("DirSize = %d, %v; want 10", n, err)
			}
			names := opened()
			if len(names) != 1 || names[0] != "a" && names[0] != "b" {
				t.Errorf("DirSize opened %q, want one of a and b", names)
			}
		})
	}
}
