package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
)

// quotaConfig is the suite's TOML with caches of a pool of their own and
// a hard quota of 100 MiB each.
func (p gcPool) quotaConfig(gc string) string {
	return defaultConfig + fmt.Sprintf("[cache]\npool = %q\nstate_dir = %q\nquota = \"100MiB\"\n[cache.gc]\nat_stages = false\n%s", p.name, p.stateDir, gc)
}

const quotaBytes = 100 * mib

// quotaImage is the filesystem image of a quota'd volume, and whether a
// loop device holds it.
func quotaImage(t *testing.T, volume string) (image string, allocated int64, looped bool) {
	t.Helper()
	info, err := eng.InspectVolume(context.Background(), volume)
	if err != nil {
		t.Fatal(err)
	}
	image = filepath.Join(filepath.Dir(info.Mountpoint), "warmcache-quota.img")
	var st syscall.Stat_t
	if err := syscall.Stat(image, &st); err != nil {
		t.Fatalf("volume %s has no filesystem image: %v", volume, err)
	}
	return image, st.Blocks * 512, loopedImage(t, image)
}

// loopedImage says whether a loop device is attached to image.
func loopedImage(t *testing.T, image string) bool {
	t.Helper()
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(data)), image) {
			return true
		}
	}
	return false
}

// TestCacheQuota: with cache.quota = "100MiB", a job that writes 400 MiB
// into its module cache fails with ENOSPC there and gets the quota line;
// the volume and the host's disk hold at most the quota; cache ls shows
// it; the project's next job finds the cache emptied and passes; the GC's
// eviction takes the image and its loop device with the volume.
func TestCacheQuota(t *testing.T) {
	requireQuotas(t)
	pool := newGCPool(t)
	project := nextJobID()
	root := dataRoot(t)

	j := newJob(t, jobSpec{ProjectID: project, Config: pool.quotaConfig("")})
	if r := j.prepare(); r.Code != 0 || strings.Contains(r.Stderr, "not enforced") {
		t.Fatalf("prepare: %s", r)
	}
	mod := pool.volumes(t, project)["/go/pkg/mod"]
	freeBefore, _, err := host.DiskSpace(root)
	if err != nil {
		t.Fatal(err)
	}
	r := j.run("build_script", runnerScript("df -k /go/pkg/mod\nhead -c 419430400 /dev/zero > /go/pkg/mod/big\n"))
	freeAfter, _, err := host.DiskSpace(root)
	if err != nil {
		t.Fatal(err)
	}
	line := "Cache go /go/pkg/mod is full at 100 MiB (cache.quota)"
	if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "No space left on device") || !strings.Contains(r.Stderr, line) {
		t.Fatalf("build_script writing 400 MiB: want a failure on ENOSPC and %q:\n%s", line, r)
	}
	image, allocated, looped := quotaImage(t, mod)
	if allocated > quotaBytes || !looped {
		t.Errorf("image %s takes %d bytes (looped: %v), want at most %d, on a loop device", image, allocated, looped, quotaBytes)
	}
	// Other tests share the disk: the bound is loose, but 400 MiB would
	// break it.
	t.Logf("data root free space dropped by %.1f MiB while the job wrote 400 MiB; the image takes %.1f MiB", float64(freeBefore-freeAfter)/mib, float64(allocated)/mib)
	if drop := freeBefore - freeAfter; drop > quotaBytes+100*mib {
		t.Errorf("free space dropped by %d bytes, want at most the quota and some", drop)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}

	ls := j.call("cache", "ls", "--json")
	var entries []cache.Entry
	if ls.Code != 0 || json.Unmarshal([]byte(ls.Stdout), &entries) != nil {
		t.Fatalf("cache ls --json: %s", ls)
	}
	var seen bool
	for _, e := range entries {
		if e.Volume == mod {
			seen = true
			if e.QuotaBytes != quotaBytes || e.QuotaUsedBytes < 80*mib || e.QuotaUsedBytes > quotaBytes {
				t.Errorf("cache ls: %+v, want a full 100 MiB quota", e)
			}
		}
	}
	if table := j.call("cache", "ls"); !seen || !strings.Contains(table.Stdout, "of 100 MiB") {
		t.Errorf("cache ls has no quota for %s:\n%s", mod, table.Stdout)
	}

	next := newJob(t, jobSpec{ProjectID: project, Config: pool.quotaConfig("")})
	r = next.prepare()
	if r.Code != 0 || !strings.Contains(r.Stderr, "Cache go /go/pkg/mod was full at 100 MiB (cache.quota): emptied") {
		t.Fatalf("prepare of the next job: %s", r)
	}
	if r := next.run("build_script", runnerScript("test ! -e /go/pkg/mod/big\nhead -c 10485760 /dev/zero > /go/pkg/mod/small\n")); r.Code != 0 || strings.Contains(r.Stderr, "is full") {
		t.Fatalf("next job: %s", r)
	}
	if r := next.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}

	// Evicted by the GC: the image goes with the volume, and its loop
	// device with the filesystem's mount.
	pool.age(t, pool.volumes(t, project), 48*time.Hour)
	gc := newJob(t, jobSpec{Config: pool.quotaConfig(`max_idle = "24h"`)})
	if r := gc.call("cache", "gc"); r.Code != 0 || !strings.Contains(r.Stdout, "Evicted "+mod) {
		t.Fatalf("cache gc: %s", r)
	}
	if exists(t, mod) {
		t.Errorf("%s not evicted", mod)
	}
	if _, err := os.Stat(image); !os.IsNotExist(err) {
		t.Errorf("image %s after eviction: %v, want gone", image, err)
	}
	if loopedImage(t, image) {
		t.Errorf("a loop device still holds %s", image)
	}
}

// TestCacheQuotaUnderLimit: a job well under the quota runs as without
// one, on the quota's filesystem, and its cache is warm for the next job.
func TestCacheQuotaUnderLimit(t *testing.T) {
	requireQuotas(t)
	pool := newGCPool(t)
	project := nextJobID()
	// Registered first, so run last: after the test's caches went.
	var image string
	t.Cleanup(func() {
		if image != "" && loopedImage(t, image) {
			t.Errorf("a loop device still holds %s after the test's caches went", image)
		}
	})
	for i, script := range []string{
		// The filesystem of the quota: 100 MiB less its own tables.
		"df -k /go/pkg/mod | awk 'NR == 2 && $2 > 80000 && $2 <= 102400 { ok = 1 } END { exit !ok }'\nhead -c 10485760 /dev/urandom > /go/pkg/mod/blob\n",
		"test $(wc -c < /go/pkg/mod/blob) = 10485760\n",
	} {
		j := newJob(t, jobSpec{ProjectID: project, Config: pool.quotaConfig("")})
		if r := j.prepare(); r.Code != 0 || strings.Contains(r.Stderr, "cache.quota") {
			t.Fatalf("prepare %d: %s", i, r)
		}
		if r := j.run("build_script", runnerScript(script)); r.Code != 0 || strings.Contains(r.Stderr, "cache.quota") {
			t.Fatalf("job %d: %s", i, r)
		}
		if r := j.cleanup(); r.Code != 0 {
			t.Fatalf("cleanup %d: %s", i, r)
		}
	}
	var looped bool
	image, _, looped = quotaImage(t, pool.volumes(t, project)["/go/pkg/mod"])
	if !looped {
		t.Errorf("no loop device holds %s", image)
	}
}

// requireQuotas fails the test where the host cannot enforce quotas: the
// suite's host can, and a skip would pass for nothing.
func requireQuotas(t *testing.T) {
	t.Helper()
	if err := host.New(eng, nil).QuotaSupport(); err != nil {
		t.Fatalf("this host should support quotas: %v", err)
	}
}

// dataRoot is the engine's data root.
func dataRoot(t *testing.T) string {
	t.Helper()
	info, err := eng.Ping(context.Background())
	if err != nil || info.RootDir == "" {
		t.Fatalf("engine data root: %+v, %v", info, err)
	}
	return info.RootDir
}

// TestQuotaFork: a fork of a quota'd cache reads the cache's filesystem
// through the overlay, in the same time whatever the cache's size (as
// TestForkVsCopy measures it for plain caches); and the cost of making a
// quota'd volume, up to a 20 GiB one, is logged.
func TestQuotaFork(t *testing.T) {
	requireQuotas(t)
	ctx := t.Context()
	local := host.New(eng, nil)
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + fmt.Sprint("-", os.Getpid())
	var volumes []string
	t.Cleanup(func() {
		for i := len(volumes) - 1; i >= 0; i-- {
			if err := local.ReleaseQuota(context.Background(), volumes[i]); err != nil {
				t.Errorf("releasing %s: %v", volumes[i], err)
			}
			if err := eng.Remove(context.Background(), engine.Resource{Type: engine.Volume, Name: volumes[i]}); err != nil {
				t.Errorf("removing %s: %v", volumes[i], err)
			}
		}
	})
	volume := func(v string, opts map[string]string) string {
		t.Helper()
		v = name + "-" + v
		volumes = append(volumes, v)
		if err := eng.EnsureVolume(ctx, engine.VolumeSpec{Name: v, DriverOpts: opts}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	seq := 0
	run := func(script string, mounts ...engine.Mount) string {
		t.Helper()
		seq++
		c := fmt.Sprintf("%s-c%d", name, seq)
		t.Cleanup(func() { eng.Remove(context.Background(), engine.Resource{Type: engine.Container, Name: c}) })
		spec := engine.ContainerSpec{Name: c, Image: busyboxImage, Cmd: []string{"sleep", "300"}, Mounts: mounts}
		if err := eng.CreateContainer(ctx, spec); err != nil {
			t.Fatal(err)
		}
		if err := eng.StartContainer(ctx, c); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		exit, err := eng.Exec(ctx, c, []string{"sh", "-c", script}, nil, &out, &out)
		if err != nil || exit.Code != 0 {
			t.Fatalf("%s: exit %d, %v: %s", script, exit.Code, err, out.String())
		}
		if err := eng.Remove(ctx, engine.Resource{Type: engine.Container, Name: c}); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	quotad := func(v string, limit int64) (string, time.Duration) {
		t.Helper()
		v = volume(v, nil)
		start := time.Now()
		if err := local.CreateQuota(ctx, v, limit); err != nil {
			t.Fatal(err)
		}
		return v, time.Since(start)
	}
	_, make20G := quotad("huge", 20<<30)
	big, makeBig := quotad("big", 512*mib)
	small, _ := quotad("small", 512*mib)
	for v, n := range map[string]int{big: 250, small: 25} {
		run(fmt.Sprintf("for i in $(seq %d); do head -c 1048576 /dev/urandom > /c/f$i; done", n), engine.Mount{Volume: v, Target: "/c"})
	}
	fork := func(lower string, i int) time.Duration {
		start := time.Now()
		layer := volume(fmt.Sprintf("layer%d", i), nil)
		if err := local.PrepareLayer(ctx, layer); err != nil {
			t.Fatal(err)
		}
		opts, err := local.OverlayOptions(ctx, lower, layer, false)
		if err != nil {
			t.Fatal(err)
		}
		f := volume(fmt.Sprintf("fork%d", i), opts)
		out := run("ls /c | wc -l && echo new > /c/new", engine.Mount{Volume: f, Target: "/c"})
		took := time.Since(start)
		if n := strings.TrimSpace(out); n != "250" && n != "25" {
			t.Fatalf("the fork of %s lists %s files, want the cache's", lower, n)
		}
		return took
	}
	var forkBig, forkSmall []time.Duration
	for i := range 3 {
		forkBig = append(forkBig, fork(big, i))
		forkSmall = append(forkSmall, fork(small, 10+i))
	}
	if out := run("ls /c | wc -l", engine.Mount{Volume: big, Target: "/c"}); strings.TrimSpace(out) != "250" {
		t.Errorf("the forks wrote into the quota'd cache: it lists %s files", out)
	}
	med := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("quota'd volume made in %s (512 MiB), %s (20 GiB); medians of 3 forks of a quota'd cache: 250 MB %s, 25 MB %s",
		ms(makeBig), ms(make20G), ms(med(forkBig)), ms(med(forkSmall)))
}
