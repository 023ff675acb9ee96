package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
)

// forkConfig is the pool's config with cache.fork set to mode.
func (p gcPool) forkConfig(mode, gc string) string {
	return strings.Replace(p.config(gc), "[cache]\n", "[cache]\nfork = \""+mode+"\"\n", 1)
}

// runStep prepares a job, runs body as its build_script and cleans up,
// returning prepare's log and the step's stdout.
func runStep(t *testing.T, spec jobSpec, body string) (prepareLog, stdout string) {
	t.Helper()
	j := newJob(t, spec)
	p := j.prepare()
	if p.Code != 0 {
		t.Fatalf("prepare: %s", p)
	}
	r := j.run("build_script", runnerScript(body))
	if r.Code != 0 {
		t.Fatalf("build_script: %s", r)
	}
	if c := j.cleanup(); c.Code != 0 {
		t.Fatalf("cleanup: %s", c)
	}
	return p.Stderr, r.Stdout
}

const showCache = "for f in protected.txt mine.txt; do printf '%s=%s ' $f \"$(cat /go/pkg/mod/$f 2>/dev/null || echo none)\"; done; echo\n"

// TestCacheFork: an unprotected job of a project whose protected cache
// exists starts warm from a fork of it; its writes (new files, a changed
// file) are invisible to the protected cache and the next protected job,
// and, with fork = "keep", the next unprotected job finds them. A GC
// during the fork leaves the protected cache alone.
func TestCacheFork(t *testing.T) {
	pool := newGCPool(t)
	project := nextJobID()
	cfg := pool.forkConfig("keep", "")
	runStep(t, jobSpec{ProjectID: project, Protected: true, Config: cfg}, "echo p1 > /go/pkg/mod/protected.txt\n")
	protectedMod := pool.volumes(t, project)["/go/pkg/mod"]

	u := newJob(t, jobSpec{ProjectID: project, Config: cfg})
	p := u.prepare()
	if p.Code != 0 || !strings.Contains(p.Stderr, "Cache go /go/pkg/mod: forked from the protected cache (") {
		t.Fatalf("unprotected prepare should fork the protected cache: %s", p)
	}
	// A budget breach while the fork stands: the protected cache it reads
	// is not evicted, though no container mounts it.
	pool.age(t, map[string]string{"mod": protectedMod}, time.Hour)
	if r := u.call("cache", "gc"); r.Code != 0 {
		t.Fatalf("cache gc: %s", r)
	}
	gc := newJob(t, jobSpec{Config: pool.forkConfig("keep", `budget = "1B"`)})
	if r := gc.call("cache", "gc"); r.Code != 0 || !exists(t, protectedMod) {
		t.Fatalf("cache gc during the fork removed the protected cache: %s", r)
	}
	r := u.run("build_script", runnerScript(showCache+"echo u1 > /go/pkg/mod/protected.txt; echo u1 > /go/pkg/mod/mine.txt\n"))
	if r.Code != 0 || r.Stdout != "protected.txt=p1 mine.txt=none \n" {
		t.Errorf("the fork should show the protected cache: %s", r)
	}
	if c := u.cleanup(); c.Code != 0 {
		t.Fatalf("cleanup: %s", c)
	}

	_, out := runStep(t, jobSpec{ProjectID: project, Protected: true, Config: cfg}, showCache)
	if out != "protected.txt=p1 mine.txt=none \n" {
		t.Errorf("the next protected job sees the unprotected job's writes: %q", out)
	}
	log, out := runStep(t, jobSpec{ProjectID: project, Config: cfg}, showCache)
	if out != "protected.txt=u1 mine.txt=u1 \n" || !strings.Contains(log, "its own writes kept from earlier unprotected jobs") {
		t.Errorf("the next unprotected job should find its kept layer over the protected cache: %q\n%s", out, log)
	}

	// discard: the layer goes with the job.
	discard := pool.forkConfig("discard", "")
	runStep(t, jobSpec{ProjectID: project, Config: discard}, "echo d1 > /go/pkg/mod/mine.txt\n")
	if _, out := runStep(t, jobSpec{ProjectID: project, Config: discard}, showCache); out != "protected.txt=p1 mine.txt=none \n" {
		t.Errorf("a discarded layer survived the job: %q", out)
	}
}

// TestCacheForkConcurrent: with fork = "keep", two unprotected jobs of
// one project at once never share the kept layer (one overlay's upper and
// work directories): the second gets a layer of its own, discarded with
// it; both see the protected cache and their own writes only, and the
// next unprotected job finds the first one's writes.
func TestCacheForkConcurrent(t *testing.T) {
	pool := newGCPool(t)
	project := nextJobID()
	cfg := pool.forkConfig("keep", "")
	runStep(t, jobSpec{ProjectID: project, Protected: true, Config: cfg}, "echo p1 > /go/pkg/mod/protected.txt\n")

	a, b := newJob(t, jobSpec{ProjectID: project, Slot: 0, Config: cfg}), newJob(t, jobSpec{ProjectID: project, Slot: 1, Config: cfg})
	if p := a.prepare(); p.Code != 0 || !strings.Contains(p.Stderr, "Cache go /go/pkg/mod: forked from the protected cache (") ||
		!strings.Contains(p.Stderr, "its own writes kept from earlier unprotected jobs") {
		t.Fatalf("first unprotected prepare should fork over the kept layer: %s", p)
	}
	if p := b.prepare(); p.Code != 0 || !strings.Contains(p.Stderr, "another job is using the kept layer") {
		t.Fatalf("second unprotected prepare should get a layer of its own: %s", p)
	}
	if r := a.run("build_script", runnerScript("echo a1 > /go/pkg/mod/mine.txt\n")); r.Code != 0 {
		t.Fatalf("first job: %s", r)
	}
	r := b.run("build_script", runnerScript(showCache+"echo b1 > /go/pkg/mod/mine.txt\n"+showCache))
	if r.Code != 0 || r.Stdout != "protected.txt=p1 mine.txt=none \nprotected.txt=p1 mine.txt=b1 \n" {
		t.Errorf("second job should see the protected cache and its own write only: %s", r)
	}
	if r := a.run("step_check", runnerScript(showCache)); r.Code != 0 || r.Stdout != "protected.txt=p1 mine.txt=a1 \n" {
		t.Errorf("first job after the second one's write: %s", r)
	}
	// Not waiting for the removals cleanup hands to the background: the
	// first job's fork over the kept layer goes in the stage, so the
	// project's next job, however soon, finds the layer free.
	for _, j := range []*job{a, b} {
		if c := j.call("cleanup"); c.Code != 0 {
			t.Fatalf("cleanup: %s", c)
		}
	}
	if _, out := runStep(t, jobSpec{ProjectID: project, Config: cfg}, showCache); out != "protected.txt=p1 mine.txt=a1 \n" {
		t.Errorf("the next unprotected job should find the first job's kept writes: %q", out)
	}
}

// TestForkVsCopy measures, side by side in one run on the real engine,
// what a fork of a 250 MB cache costs against a plain copy of it, and a
// fork of a 25 MB cache: each is a volume made ready plus one container
// that mounts it and lists it. The fork must not depend on the size.
func TestForkVsCopy(t *testing.T) {
	ctx := t.Context()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + fmt.Sprint("-", os.Getpid())
	var volumes, containers []string
	t.Cleanup(func() {
		for _, c := range containers {
			eng.Remove(context.Background(), engine.Resource{Type: engine.Container, Name: c})
		}
		for i := len(volumes) - 1; i >= 0; i-- {
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
	// run runs sh -c script in a busybox container with mounts.
	seq := 0
	run := func(script string, mounts ...engine.Mount) string {
		t.Helper()
		seq++
		c := fmt.Sprintf("%s-c%d", name, seq)
		containers = append(containers, c)
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
	fill := func(v string, mib int) {
		run(fmt.Sprintf("for i in $(seq %d); do head -c 1048576 /dev/urandom > /c/f$i; done", mib), engine.Mount{Volume: v, Target: "/c"})
	}
	big, small := volume("big", nil), volume("small", nil)
	fill(big, 250)
	fill(small, 25)

	fork := func(lower string, i int) time.Duration {
		start := time.Now()
		layer := volume(fmt.Sprintf("layer%d", i), nil)
		local := host.New(eng, nil)
		if err := local.PrepareLayer(ctx, layer); err != nil {
			t.Fatal(err)
		}
		opts, err := local.OverlayOptions(ctx, lower, layer, false)
		if err != nil {
			t.Fatal(err)
		}
		f := volume(fmt.Sprintf("fork%d", i), opts)
		out := run("ls /c | wc -l", engine.Mount{Volume: f, Target: "/c"})
		took := time.Since(start)
		if strings.TrimSpace(out) == "0" {
			t.Fatalf("the fork of %s is empty", lower)
		}
		return took
	}
	cp := func(lower string, i int) time.Duration {
		start := time.Now()
		dst := volume(fmt.Sprintf("copy%d", i), nil)
		run("cp -a /src/. /c/ && ls /c | wc -l", engine.Mount{Volume: lower, Target: "/src", ReadOnly: true}, engine.Mount{Volume: dst, Target: "/c"})
		return time.Since(start)
	}
	// The same container on an empty volume: what every variant pays.
	bare := func(i int) time.Duration {
		start := time.Now()
		run("ls /c | wc -l", engine.Mount{Volume: volume(fmt.Sprintf("bare%d", i), nil), Target: "/c"})
		return time.Since(start)
	}
	var forkBig, forkSmall, copyBig, base []time.Duration
	for i := range 3 {
		base = append(base, bare(i))
		copyBig = append(copyBig, cp(big, i))
		forkBig = append(forkBig, fork(big, i))
		forkSmall = append(forkSmall, fork(small, 10+i))
	}
	med := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	fb, fs, cb, b := med(forkBig), med(forkSmall), med(copyBig), med(base)
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	t.Logf("medians of 3, each with one container that mounts and lists the volume (alone on an empty volume: %s): "+
		"fork of 250 MB %s, fork of 25 MB %s, copy of 250 MB %s; copy/fork %.1fx; fork 250 MB / 25 MB %.2f; over the bare container: fork %s, copy %s",
		ms(b), ms(fb), ms(fs), ms(cb), float64(cb)/float64(fb), float64(fb)/float64(fs), ms(fb-b), ms(cb-b))
	if fb >= cb {
		t.Errorf("forking a 250 MB cache (%s) is not faster than copying it (%s)", fb, cb)
	}
}
