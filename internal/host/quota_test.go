package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
)

// storeVolumes lays volumes out as Docker's local driver does:
// root/NAME/_data.
type storeVolumes string

func (s storeVolumes) InspectVolume(_ context.Context, name string) (engine.VolumeInfo, error) {
	return engine.VolumeInfo{Name: name, Mountpoint: filepath.Join(string(s), name, "_data")}, nil
}

// quotaHost is a Host over a local volume store in a temporary directory,
// on a host that supports quotas (root, loop devices, mkfs.ext4).
func quotaHost(t *testing.T) (*Host, string) {
	t.Helper()
	h := New(storeVolumes(t.TempDir()), nil)
	if err := h.QuotaSupport(); err != nil {
		t.Skipf("no quotas here: %v", err)
	}
	return h, string(h.volumes.(storeVolumes))
}

func TestQuotaLimitsWritesAndGoesWithItsMount(t *testing.T) {
	h, root := quotaHost(t)
	ctx := t.Context()
	dir := filepath.Join(root, "v", "_data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if quota, err := h.MountQuota(ctx, "v"); quota || err != nil {
		t.Fatalf("MountQuota before CreateQuota = %v, %v; want false, nil", quota, err)
	}
	const limit = 32 << 20
	if err := h.CreateQuota(ctx, "v", limit); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ReleaseQuota(context.Background(), "v") })
	if fi, err := os.Stat(dir); err != nil || fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("root of the filesystem: %v, %v; want open to all users", fi.Mode(), err)
	}
	err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 2*limit), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing twice the limit: %v, want ENOSPC", err)
	}
	q, ok, err := h.Quota(ctx, "v")
	if err != nil || !ok || q.Limit != limit || !q.Full() || q.Used > limit {
		t.Fatalf("Quota = %+v, %v, %v; want full at %d", q, ok, err, limit)
	}
	image := filepath.Join(root, "v", quotaImageName)
	var st syscall.Stat_t
	if err := syscall.Stat(image, &st); err != nil || st.Blocks*512 > limit {
		t.Errorf("image takes %d bytes, %v; want at most %d", st.Blocks*512, err, limit)
	}

	// Mounting again is a no-op; once released, the loop device is gone
	// and the next mount finds the files.
	if quota, err := h.MountQuota(ctx, "v"); !quota || err != nil {
		t.Fatalf("MountQuota = %v, %v", quota, err)
	}
	if err := h.ReleaseQuota(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := attachedLoop(f)
	f.Close()
	if err != nil || dev != "" {
		t.Errorf("after release the image is on %q, %v; want no loop device", dev, err)
	}
	if mounted, _ := isMountpoint(dir); mounted {
		t.Error("still mounted after release")
	}
	if quota, err := h.MountQuota(ctx, "v"); !quota || err != nil {
		t.Fatalf("MountQuota after release = %v, %v", quota, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); err != nil {
		t.Errorf("after mounting again: %v", err)
	}

	// A reset empties it.
	if err := h.ResetQuota(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if q, ok, err := h.Quota(ctx, "v"); err != nil || !ok || q.Full() {
		t.Errorf("after reset Quota = %+v, %v, %v; want room", q, ok, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after reset: %v, want the file gone", err)
	}
}

func TestQuotaReleaseKeepsAFilesystemStillMountedElsewhere(t *testing.T) {
	h, root := quotaHost(t)
	ctx := t.Context()
	dir := filepath.Join(root, "v", "_data")
	other := filepath.Join(root, "container")
	for _, d := range []string{dir, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.CreateQuota(ctx, "v", 16<<20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ReleaseQuota(context.Background(), "v") })
	// As a container's bind of the volume.
	if err := syscall.Mount(dir, other, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := h.ReleaseQuota(ctx, "v"); !errors.Is(err, engine.ErrInUse) {
		t.Errorf("ReleaseQuota while bound elsewhere = %v, want ErrInUse", err)
	}
	if mounted, _ := isMountpoint(dir); !mounted {
		t.Error("not mounted back")
	}
	if err := syscall.Unmount(other, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.ReleaseQuota(ctx, "v"); err != nil {
		t.Errorf("ReleaseQuota once unbound = %v", err)
	}
}

func TestQuotaNotInALocalStore(t *testing.T) {
	h, f, _ := localHost(t)
	volume(t, f, "v")
	if quota, err := h.MountQuota(t.Context(), "v"); quota || err != nil {
		t.Errorf("MountQuota = %v, %v; want false, nil", quota, err)
	}
	if err := h.CreateQuota(t.Context(), "v", 1<<20); !errors.Is(err, ErrNoQuota) && h.QuotaSupport() == nil {
		t.Errorf("CreateQuota = %v, want ErrNoQuota", err)
	}
	if err := h.ReleaseQuota(t.Context(), "v"); err != nil {
		t.Errorf("ReleaseQuota = %v", err)
	}
	var nilHost *Host
	if quota, err := nilHost.MountQuota(t.Context(), "v"); quota || err != nil {
		t.Errorf("nil MountQuota = %v, %v", quota, err)
	}
	if err := nilHost.QuotaSupport(); !errors.Is(err, ErrNoQuota) {
		t.Errorf("nil QuotaSupport = %v", err)
	}
}
