package host

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// writeTree creates files of the given sizes (paths relative to dir).
func writeTree(t *testing.T, dir string, files map[string]int) {
	t.Helper()
	for name, size := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tree lists the files under root as "path=content" (links as
// "path->target"), sorted.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+"->"+target)
		case d.Type().IsRegular():
			data, _ := os.ReadFile(p)
			out = append(out, rel+"="+strings.TrimSpace(string(data)))
		case d.IsDir():
			out = append(out, rel+"/")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// watchOpens returns a function that lists the entries of dir that were
// opened since watchOpens was called. The kernel queues the inotify event
// within the open call, so what the code under test opened is there as soon
// as it returns. Descriptors made with O_PATH open nothing and are not
// reported.
func watchOpens(t *testing.T, dir string) func() []string {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN); err != nil {
		t.Fatalf("watching %s: %v", dir, err)
	}
	return func() []string {
		var names []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				return names
			}
			if err != nil {
				t.Fatalf("reading inotify events: %v", err)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				size := int(binary.NativeEndian.Uint32(buf[off+12:]))
				name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+size]
				if s := strings.TrimRight(string(name), "\x00"); s != "" {
					names = append(names, s)
				}
				off += unix.SizeofInotifyEvent + size
			}
		}
	}
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

// mknodNull makes a character device like /dev/null at path; a job with
// CAP_MKNOD can do the same in its volume.
func mknodNull(path string) error {
	return syscall.Mknod(path, syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
}

// canMknod fails t where device nodes cannot be made (not root).
func canMknod(t *testing.T) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe")
	if err := mknodNull(p); errors.Is(err, syscall.EPERM) {
		t.Fatal("making a device node needs root (CAP_MKNOD): run the tests as root, as make test and CI do")
	}
}

// within runs fn and fails t if it has not returned after a long while:
// code that blocks on a planted FIFO would otherwise hang the test run.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}
