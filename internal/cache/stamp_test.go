package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestStampRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		stamp Stamp
		file  string
	}{
		{
			name:  "zero",
			stamp: Stamp{},
			file:  `{"last_used":"0001-01-01T00:00:00Z","size_bytes":0}`,
		},
		{
			name:  "claimed, not measured",
			stamp: Stamp{LastUsed: t0, JobID: 22961},
			file:  `{"last_used":"2026-11-26T21:31:10Z","size_bytes":0,"job_id":22961}`,
		},
		{
			name:  "measured",
			stamp: Stamp{LastUsed: t0, SizeBytes: 1 << 40, Measured: t1, JobID: 1},
			file:  `{"last_used":"2026-11-26T21:31:10Z","size_bytes":1099511627776,"measured":"2026-11-26T22:31:10Z","job_id":1}`,
		},
		{
			name:  "nanoseconds survive",
			stamp: Stamp{LastUsed: t0.Add(123456789 * time.Nanosecond)},
			file:  `{"last_used":"2026-11-26T21:31:10.123456789Z","size_bytes":0}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := WriteStamp(dir, tt.stamp); err != nil {
				t.Fatalf("WriteStamp: %v", err)
			}
			if got := stampFile(t, dir); got != tt.file {
				t.Errorf("stamp file %s, want %s", got, tt.file)
			}
			got, err := ReadStamp(dir)
			if err != nil {
				t.Fatalf("ReadStamp: %v", err)
			}
			if got != tt.stamp {
				t.Errorf("ReadStamp = %+v, want %+v", got, tt.stamp)
			}
			fi, err := os.Stat(filepath.Join(dir, StampFile))
			if err != nil || fi.Mode() != 0o644 {
				t.Errorf("stamp mode %v, %v; want -rw-r--r--", fi.Mode(), err)
			}
			// Overwriting leaves one file, no temporaries.
			if err := WriteStamp(dir, tt.stamp); err != nil {
				t.Fatal(err)
			}
			if names := dirNames(t, dir); !slices.Equal(names, []string{StampFile}) {
				t.Errorf("directory holds %q, want only the stamp", names)
			}
		})
	}
}

func TestReadStampErrors(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		s, err := ReadStamp(t.TempDir())
		if !errors.Is(err, fs.ErrNotExist) || s != (Stamp{}) {
			t.Errorf("ReadStamp = %+v, %v; want not exist", s, err)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, StampFile), []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := ReadStamp(dir)
		want := "stamp of " + dir + ": invalid character 'g' looking for beginning of value"
		if err == nil || err.Error() != want || s != (Stamp{}) {
			t.Errorf("ReadStamp = %+v, %v; want %q", s, err, want)
		}
		if errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a corrupt stamp reads as missing: %v", err)
		}
	})
}

func TestWriteStampErrors(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "gone")
		err := WriteStamp(dir, Stamp{LastUsed: t0})
		// The temporary name is random; the rest is exact.
		want := regexp.MustCompile(`^writing stamp: open ` + regexp.QuoteMeta(dir+"/"+StampFile) + `\.[0-9]+: no such file or directory$`)
		if err == nil || !want.MatchString(err.Error()) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("WriteStamp error = %v, want a match of %s", err, want)
		}
	})
	t.Run("stamp is a directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, StampFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, StampFile, "x"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteStamp(dir, Stamp{LastUsed: t0}); err == nil {
			t.Fatal("WriteStamp over a non-empty directory succeeded")
		}
		// The temporary file is cleaned up after the failed rename.
		if names := dirNames(t, dir); !slices.Equal(names, []string{StampFile}) {
			t.Errorf("directory holds %q after a failed write", names)
		}
	})
}

// TestWriteStampConcurrent has 8 writers replace the stamp while readers
// read it: every read must parse a complete stamp, one a writer wrote.
func TestWriteStampConcurrent(t *testing.T) {
	const writers, rounds, readers = 8, 50, 4
	dir := t.TempDir()
	// stamp is what writer w writes in round r; its fields tie together
	// so a read can check it is whole.
	stamp := func(w, r int) Stamp {
		id := int64(w*1000 + r)
		return Stamp{LastUsed: t0.Add(time.Duration(id) * time.Second), SizeBytes: id * 1_000_003, Measured: t1, JobID: id}
	}
	if err := WriteStamp(dir, stamp(0, 0)); err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	var rwg sync.WaitGroup
	for range readers {
		rwg.Go(func() {
			for {
				s, err := ReadStamp(dir)
				if err != nil {
					t.Errorf("ReadStamp during writes: %v", err)
					return
				}
				if w, r := int(s.JobID/1000), int(s.JobID%1000); s != stamp(w, r) {
					t.Errorf("torn stamp %+v", s)
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
				if err := WriteStamp(dir, stamp(w+1, r)); err != nil {
					t.Errorf("WriteStamp: %v", err)
					return
				}
			}
		})
	}
	wwg.Wait()
	close(done)
	rwg.Wait()

	if names := dirNames(t, dir); !slices.Equal(names, []string{StampFile}) {
		t.Errorf("directory holds %q after concurrent writes, want only the stamp", names)
	}
	s, err := ReadStamp(dir)
	if err != nil {
		t.Fatal(err)
	}
	if w := s.JobID / 1000; w < 1 || w > writers || s.JobID%1000 != rounds-1 {
		t.Errorf("final stamp %+v is not the last round of a writer", s)
	}
}
