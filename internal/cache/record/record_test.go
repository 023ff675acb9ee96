package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The replaceFile tests come from those of the volume stamp it used to
// write (a file jobs shared the directory of); the records use it now.

func TestReplaceFile(t *testing.T) {
	for _, name := range []string{".warmcache-stamp", "cache.json"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			for _, data := range []string{`{"size_bytes":1}`, `{"size_bytes":22}`} {
				if err := replaceFile(path, []byte(data), 0o644); err != nil {
					t.Fatalf("replaceFile: %v", err)
				}
				if got, err := os.ReadFile(path); err != nil || string(got) != data {
					t.Errorf("file holds %q, %v; want %q", got, err, data)
				}
				fi, err := os.Stat(path)
				if err != nil || fi.Mode() != 0o644 {
					t.Errorf("mode %v, %v; want -rw-r--r--", fi.Mode(), err)
				}
				// Overwriting leaves one file, no temporaries.
				if names := dirNames(t, dir); !slices.Equal(names, []string{name}) {
					t.Errorf("directory holds %q, want only %s", names, name)
				}
			}
		})
	}
}

func TestReplaceFileErrors(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		for name, temp := range map[string]string{".warmcache-stamp": ".warmcache-stamp", "cache.json": ".cache.json"} {
			dir := filepath.Join(t.TempDir(), "gone")
			err := replaceFile(filepath.Join(dir, name), []byte("x"), 0o644)
			// The temporary name is random; the rest is exact: hidden,
			// beside the file.
			want := regexp.MustCompile(`^open ` + regexp.QuoteMeta(dir+"/"+temp) + `\.[0-9]+: no such file or directory$`)
			if err == nil || !want.MatchString(err.Error()) || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("replaceFile error = %v, want a match of %s", err, want)
			}
		}
	})
	t.Run("path is a directory", func(t *testing.T) {
		dir := t.TempDir()
		const name = ".warmcache-stamp"
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "x"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := replaceFile(filepath.Join(dir, name), []byte("x"), 0o644); err == nil {
			t.Fatal("replaceFile over a non-empty directory succeeded")
		}
		// The temporary file is cleaned up after the failed rename.
		if names := dirNames(t, dir); !slices.Equal(names, []string{name}) {
			t.Errorf("directory holds %q after a failed write", names)
		}
	})
}

// TestReplaceFileConcurrent has 8 writers replace the file while readers
// read it: every read must get a whole file, one a writer wrote.
func TestReplaceFileConcurrent(t *testing.T) {
	const writers, rounds, readers = 8, 50, 4
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.json")
	// content is what writer w writes in round r: its id, over and over,
	// so that a read can check it is whole.
	content := func(id int) string { return strings.Repeat(fmt.Sprintf("%06d\n", id), 1000) }
	if err := replaceFile(path, []byte(content(0)), 0o644); err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	var rwg sync.WaitGroup
	for range readers {
		rwg.Go(func() {
			for {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Errorf("reading during writes: %v", err)
					return
				}
				id, err := strconv.Atoi(string(data[:min(6, len(data))]))
				if err != nil || string(data) != content(id) {
					t.Errorf("torn file of %d bytes, starting %q", len(data), data[:min(14, len(data))])
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	var wwg sync.WaitGroup
	for w := range writers {
		wwg.Go(func() {
			for r := range rounds {
				if err := replaceFile(path, []byte(content((w+1)*1000+r)), 0o644); err != nil {
					t.Errorf("replaceFile: %v", err)
					return
				}
			}
		})
	}
	wwg.Wait()
	close(done)
	rwg.Wait()

	if names := dirNames(t, dir); !slices.Equal(names, []string{"cache.json"}) {
		t.Errorf("directory holds %q after concurrent writes, want only the file", names)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.Atoi(string(data[:6]))
	if w := id / 1000; w < 1 || w > writers || id%1000 != rounds-1 || string(data) != content(id) {
		t.Errorf("final file %06d is not the last round of a writer", id)
	}
}

// A job sharing the directory may replace replaceFile's temporary file
// while root holds it open. Nothing root does next may reach through what
// the job put there.
func TestReplaceFileSwappedTemp(t *testing.T) {
	root, elsewhere := t.TempDir(), t.TempDir()
	host := filepath.Join(elsewhere, "host-file")
	if err := os.WriteFile(host, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	const name = ".warmcache-stamp"
	aside := filepath.Join(elsewhere, "moved-temp")
	onOpen(t, root, func(p string) bool {
		if !strings.HasPrefix(filepath.Base(p), name+".") {
			return false
		}
		swapIn(t, p, aside, func(p string) error { return os.Symlink(host, p) })
		return true
	})
	// The file now names the job's link, which no reader follows: only
	// what was written is lost.
	_ = replaceFile(filepath.Join(root, name), []byte(`{"size_bytes":1}`), 0o644)

	if data, err := os.ReadFile(host); err != nil || string(data) != "host" {
		t.Errorf("host file now holds %q, %v", data, err)
	}
	if fi, err := os.Stat(host); err != nil || fi.Mode() != 0o600 {
		t.Errorf("host file mode %v, %v; want -rw-------", fi.Mode(), err)
	}
	// The mode went to replaceFile's own file, wherever the job put it.
	if fi, err := os.Stat(aside); err != nil || fi.Mode() != 0o644 {
		t.Errorf("replaceFile's own file: mode %v, %v; want -rw-r--r--", fi.Mode(), err)
	}
}

// Whatever a job planted at the file's name is replaced, not written
// through: rename swaps the directory entry, link or not.
func TestReplaceFileReplacesPlantedLink(t *testing.T) {
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
			path := filepath.Join(root, ".warmcache-stamp")
			if err := os.Symlink(tt.target, path); err != nil {
				t.Fatal(err)
			}
			const want = `{"size_bytes":3}`
			if err := replaceFile(path, []byte(want), 0o644); err != nil {
				t.Fatalf("replaceFile: %v", err)
			}
			if fi, err := os.Lstat(path); err != nil || fi.Mode() != 0o644 {
				t.Errorf("file: %v, %v; want a regular file -rw-r--r--", fi.Mode(), err)
			}
			if got, err := os.ReadFile(path); err != nil || string(got) != want {
				t.Errorf("file holds %q, %v; want %q", got, err, want)
			}
			if names := dirNames(t, elsewhere); !slices.Equal(names, []string{"host-file"}) {
				t.Errorf("outside the directory: %q", names)
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

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// onOpen plays a concurrent job that wins a race. Every open of dir or of
// an entry in it waits, through a fanotify permission event, until act has
// been called with the path being opened; once act returns true it is
// called no more. The opener holds its descriptor by then, so act can swap
// the path for something else exactly between the code's open and its next
// use of the name: no timing, no sleep. act must not open anything in dir
// (its own open would wait for itself).
func onOpen(t *testing.T, dir string, act func(path string) bool) {
	t.Helper()
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if errors.Is(err, unix.EPERM) {
		t.Fatal("fanotify permission events need root (CAP_SYS_ADMIN): run the tests as root, as make test and CI do")
	}
	if err != nil {
		t.Fatalf("fanotify: %v", err)
	}
	f := os.NewFile(uintptr(fd), "fanotify")
	mask := uint64(unix.FAN_OPEN_PERM | unix.FAN_ONDIR | unix.FAN_EVENT_ON_CHILD)
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, mask, unix.AT_FDCWD, dir); err != nil {
		f.Close()
		t.Fatalf("fanotify mark on %s: %v", dir, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		done := false
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return // closed at the end of the test
			}
			for off := 0; off+int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) <= n; {
				size := int(binary.NativeEndian.Uint32(buf[off:]))
				evFd := int32(binary.NativeEndian.Uint32(buf[off+16:]))
				if evFd >= 0 {
					if !done {
						path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(evFd)))
						done = err == nil && act(path)
					}
					var resp [8]byte
					binary.NativeEndian.PutUint32(resp[0:], uint32(evFd))
					binary.NativeEndian.PutUint32(resp[4:], unix.FAN_ALLOW)
					if _, err := f.Write(resp[:]); err != nil {
						t.Errorf("answering fanotify: %v", err)
					}
					unix.Close(int(evFd))
				}
				off += size
			}
		}
	})
	// Closing the group lets any open still waiting go on.
	t.Cleanup(func() { f.Close(); wg.Wait() })
}

// swapIn moves path out of the way (to aside, without opening anything)
// and puts a hostile entry in its place.
func swapIn(t *testing.T, path, aside string, plant func(path string) error) {
	t.Helper()
	if err := os.Rename(path, aside); err != nil {
		t.Errorf("moving %s aside: %v", path, err)
		return
	}
	if err := plant(path); err != nil {
		t.Errorf("planting %s: %v", path, err)
	}
}
