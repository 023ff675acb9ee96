package host

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestArchiveRestoreRoundTrip(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(src, "a/b/f.txt"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(src, "a/ro"), []byte("x"), 0o444))
	must(os.Chmod(filepath.Join(src, "a/b"), 0o555)) // read-only dir, filled before its mode is set
	must(os.Symlink("b/f.txt", filepath.Join(src, "a/in")))
	must(os.Symlink("/etc/passwd", filepath.Join(src, "a/out")))
	must(os.Symlink("../../x", filepath.Join(src, "a/up")))
	must(syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	var buf bytes.Buffer
	must(archiveDir(context.Background(), src, &buf))
	must(restoreDir(context.Background(), dst, &buf))
	if b, err := os.ReadFile(filepath.Join(dst, "a/in")); err != nil || string(b) != "hello" {
		t.Fatalf("a/in = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "a/b")); err != nil || fi.Mode().Perm() != 0o555 {
		t.Fatalf("a/b: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "a/ro")); err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("a/ro: %v %v", fi, err)
	}
	for _, gone := range []string{"a/out", "a/up", "fifo"} {
		if _, err := os.Lstat(filepath.Join(dst, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s restored: %v", gone, err)
		}
	}
	// Only into an empty volume.
	if err := restoreDir(context.Background(), dst, bytes.NewReader(nil)); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a full volume: %v", err)
	}
}

func TestRestoreRefusesHostileArchives(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  tar.Header
	}{
		{"parent", tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		{"absolute", tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644}},
		{"hard link", tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}},
		{"abs symlink", tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "/etc"}},
		{"up symlink", tar.Header{Name: "d/s", Typeflag: tar.TypeSymlink, Linkname: "../../etc"}},
		{"device", tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			// A good entry first: it must be gone after the refusal.
			if err := tw.WriteHeader(&tar.Header{Name: "good", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2}); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte("ok"))
			if err := tw.WriteHeader(&tc.hdr); err != nil {
				t.Fatal(err)
			}
			tw.Close()
			dst := t.TempDir()
			err := restoreDir(context.Background(), dst, &buf)
			if err == nil {
				t.Fatal("restored")
			}
			if entries, _ := os.ReadDir(dst); len(entries) != 0 {
				t.Fatalf("volume kept %v after %v", entries, err)
			}
		})
	}
}

func TestRestoreTruncatedLeavesVolumeEmpty(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), []byte(strings.Repeat("x", 10000)), 0o644)
	os.WriteFile(filepath.Join(src, "b"), []byte(strings.Repeat("y", 10000)), 0o644)
	var buf bytes.Buffer
	if err := archiveDir(context.Background(), src, &buf); err != nil {
		t.Fatal(err)
	}
	if err := restoreDir(context.Background(), dst, bytes.NewReader(buf.Bytes()[:buf.Len()/2])); err == nil {
		t.Fatal("truncated archive restored")
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Fatalf("volume kept %v", entries)
	}
}
