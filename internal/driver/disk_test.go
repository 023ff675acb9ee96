package driver

import (
	"errors"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
)

func TestDiskIsFull(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		free, total int64
		want        bool
	}{
		{free: 100 * gib, total: 250 * gib, want: false},
		{free: 2 * gib, total: 250 * gib, want: true},   // under 1%
		{free: 400 << 20, total: 10 * gib, want: true},  // under 512 MiB
		{free: 600 << 20, total: 10 * gib, want: false}, // 5.9%, over 512 MiB
		{free: 0, total: 0, want: false},                // nothing known
	} {
		if got := diskIsFull(tc.free, tc.total); got != tc.want {
			t.Errorf("diskIsFull(%d, %d) = %v, want %v", tc.free, tc.total, got, tc.want)
		}
	}
}

// With room on the engine's disk, a failure is reported as it is.
func TestExplainFullDiskLeavesOtherFailuresAlone(t *testing.T) {
	h := newHarness(t, nil)
	h.f.SetInfo(engine.Info{ServerVersion: "fake", RootDir: t.TempDir()}) // a disk with room
	boom := errors.New("boom")
	if err := explainFullDisk(h.deps(), boom); err != boom {
		t.Errorf("explainFullDisk = %v, want the error unchanged", err)
	}
	if err := explainFullDisk(h.deps(), nil); err != nil {
		t.Errorf("explainFullDisk(nil) = %v", err)
	}
}
