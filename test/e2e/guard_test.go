package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFreeSpaceGuard: with the data root under cache.gc.min_free_disk,
// the job that grows a cache is stopped with the guard's line, on a plain
// cache and on a quota'd one, and its step fails as a build failure; a job
// running beside them that writes as much outside its caches passes; the
// guard's GC pass evicts an idle cache of the pool.
//
// Safe on a shared disk: nothing is filled. The floor is one PiB, above
// any disk's free space, so the real data root (as the engine reports it)
// is under it throughout, and each job writes 80 MiB. The pool is the
// test's own, so its GC passes evict nothing else.
func TestFreeSpaceGuard(t *testing.T) {
	requireQuotas(t)
	pool := newGCPool(t)
	floor := `min_free_disk = "1p"`
	plain := pool.config(floor)
	quotad := defaultConfig + fmt.Sprintf("[cache]\npool = %q\nstate_dir = %q\nquota = \"200MiB\"\n[cache.gc]\nat_stages = false\n%s\n",
		pool.name, pool.stateDir, floor)

	// An idle cache of the pool, for the guard's GC pass to evict.
	idleProject := nextJobID()
	idle := newJob(t, jobSpec{ProjectID: idleProject, Config: plain})
	if r := idle.prepare(); r.Code != 0 {
		t.Fatalf("prepare of the idle project: %s", r)
	}
	if r := idle.run("build_script", runnerScript("echo x > /go/pkg/mod/x\n")); r.Code != 0 {
		t.Fatalf("idle project's job: %s", r)
	}
	if r := idle.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	idleVols := pool.volumes(t, idleProject)
	if len(idleVols) == 0 {
		t.Fatal("the idle project has no caches")
	}
	pool.age(t, idleVols, time.Hour)

	const write = "head -c 83886080 /dev/zero > %s/blob\necho wrote\nsleep 120\necho not-stopped\n"
	jobs := []struct {
		name, config, script string
		stopped              bool
	}{
		{"plain", plain, fmt.Sprintf(write, "/go/pkg/mod"), true},
		{"quota", quotad, fmt.Sprintf(write, "/root/.cache/go-build"), true},
		// Writes as much to its container's own layer, for as long as the
		// guard needs for three looks: not a cache.
		{"quiet", plain, "head -c 83886080 /dev/zero > /tmp/blob\nsleep 16\necho done-ok\n", false},
	}
	results := make([]result, len(jobs))
	elapsed := make([]time.Duration, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, jb := range jobs {
		j := newJob(t, jobSpec{Config: jb.config})
		if r := j.prepare(); r.Code != 0 || strings.Contains(r.Stderr, "not enforced") {
			t.Fatalf("prepare %s: %s", jb.name, r)
		}
		wg.Go(func() {
			start := time.Now()
			results[i], errs[i] = j.Run("build_script", runnerScript(jb.script))
			elapsed[i] = time.Since(start)
		})
	}
	wg.Wait()

	for i, jb := range jobs {
		r := results[i]
		if errs[i] != nil {
			t.Fatalf("%s: %v", jb.name, errs[i])
		}
		stopLine := strings.Contains(r.Stderr, "WARNING: stopping the job: the Docker data root has ")
		if !jb.stopped {
			if r.Code != 0 || stopLine || !strings.Contains(r.Stdout, "done-ok") {
				t.Errorf("%s, growing no cache: want it to pass, untouched:\n%s", jb.name, r)
			}
			continue
		}
		path := map[string]string{"plain": "/go/pkg/mod", "quota": "/root/.cache/go-build"}[jb.name]
		line := fmt.Sprintf("free, under cache.gc.min_free_disk (1024 TiB), and this job's cache go %s grew by ", path)
		if r.Code != buildFailureCode || !stopLine || !strings.Contains(r.Stderr, line) ||
			!strings.Contains(r.Stdout, "wrote") || strings.Contains(r.Stdout, "not-stopped") || elapsed[i] > time.Minute {
			t.Errorf("%s, growing a cache under the floor: want a build failure within a minute with %q; after %s:\n%s", jb.name, line, elapsed[i].Round(time.Second), r)
		}
		t.Logf("%s: stopped after %s: %s", jb.name, elapsed[i].Round(100*time.Millisecond), grep(r.Stderr, "WARNING: stopping"))
	}
	for path, v := range idleVols {
		if exists(t, v) {
			t.Errorf("idle cache %s (%s) not evicted by the guard's GC pass", v, path)
		}
	}
}

// grep is the first line of s containing sub.
func grep(s, sub string) string {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
