package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// gcPool is a cache pool of the test's own: the GC of its jobs only ever
// considers their volumes, never those of other tests on the engine.
type gcPool struct {
	name     string
	stateDir string
}

func newGCPool(t *testing.T) gcPool {
	return gcPool{name: fmt.Sprintf("e2e-%d", nextJobID()), stateDir: t.TempDir()}
}

// config is the suite's TOML with the pool, its state directory and the
// given [cache.gc] keys; the stages' light pass is off unless asked.
func (p gcPool) config(gc string) string {
	return defaultConfig + fmt.Sprintf("[cache]\npool = %q\nstate_dir = %q\n[cache.gc]\nat_stages = false\n%s", p.name, p.stateDir, gc)
}

// volumes names the pool's cache volumes of project, by profile path.
func (p gcPool) volumes(t *testing.T, project int64) map[string]string {
	t.Helper()
	rs, err := eng.List(context.Background(), map[string]string{naming.LabelCachePool: p.name, naming.LabelCacheProjectID: fmt.Sprint(project)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rs {
		out[r.Labels[naming.LabelCachePath]] = r.Name
	}
	return out
}

// age rewrites the records of volumes as if they were last used lastUsed
// ago and their claims had expired: time passing, for the GC.
func (p gcPool) age(t *testing.T, volumes map[string]string, lastUsed time.Duration) {
	t.Helper()
	for _, v := range volumes {
		path := filepath.Join(p.stateDir, "caches", v+".json")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var r record.Record
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		r.LastUsed = time.Now().Add(-lastUsed)
		r.Claimed = time.Now().Add(-record.LeaseGrace - time.Minute)
		if data, err = json.Marshal(r); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

const mib = 1 << 20

// fillCache runs a job of project that writes a 1 MiB module file into its
// Go module cache, then cleans up (which measures the caches).
func fillCache(t *testing.T, pool gcPool, project int64) {
	t.Helper()
	fillCacheWith(t, pool.config(""), project)
}

func fillCacheWith(t *testing.T, config string, project int64) {
	t.Helper()
	j := newJob(t, jobSpec{ProjectID: project, Config: config})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if r := j.run("build_script", runnerScript(fmt.Sprintf("head -c %d /dev/urandom > /go/pkg/mod/blob\n", mib))); r.Code != 0 {
		t.Fatalf("build_script: %s", r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
}

func exists(t *testing.T, volume string) bool {
	t.Helper()
	_, err := eng.InspectVolume(context.Background(), volume)
	if errors.Is(err, engine.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func volumePoolOf(t *testing.T, volume string) string {
	t.Helper()
	info, err := eng.InspectVolume(context.Background(), volume)
	if err != nil {
		return "none"
	}
	return info.Labels[naming.LabelCachePool]
}

// TestCacheGCEvictsOldestFirst: over budget, `cache gc` evicts the least
// recently used project's caches first and keeps the newest; --dry-run
// prints the same plan and removes nothing.
func TestCacheGCEvictsOldestFirst(t *testing.T) {
	pool := newGCPool(t)
	projects := []int64{nextJobID(), nextJobID(), nextJobID()}
	for _, p := range projects {
		fillCache(t, pool, p)
	}
	mods := make([]string, len(projects))
	for i, p := range projects {
		vols := pool.volumes(t, p)
		if len(vols) != 3 {
			t.Fatalf("project %d has cache volumes %v, want cache-dir and two Go caches", p, vols)
		}
		mods[i] = vols["/go/pkg/mod"]
		pool.age(t, vols, time.Duration(3-i)*time.Hour) // the first project is the oldest
	}
	// 3 MiB and a little in the pool; 1.5 MiB leaves room for one project.
	gc := newJob(t, jobSpec{Config: pool.config(`budget = "1.5MiB"`)})
	dry := gc.call("cache", "gc", "--dry-run")
	if dry.Code != 0 {
		t.Fatalf("cache gc --dry-run: %s", dry)
	}
	first, second := strings.Index(dry.Stdout, "Would evict "+mods[0]), strings.Index(dry.Stdout, "Would evict "+mods[1])
	if first < 0 || second < first || strings.Contains(dry.Stdout, mods[2]) {
		t.Errorf("dry run should plan the oldest project's module cache, then the next, never the newest:\n%s", dry.Stdout)
	}
	for _, m := range mods {
		if !exists(t, m) {
			t.Fatalf("dry run removed %s", m)
		}
	}

	run := gc.call("cache", "gc")
	if run.Code != 0 {
		t.Fatalf("cache gc: %s", run)
	}
	if !strings.Contains(run.Stdout, "Evicted "+mods[0]+" (") || !strings.Contains(run.Stdout, "1.0 MiB") || !strings.Contains(run.Stdout, ": over budget") {
		t.Errorf("cache gc output:\n%s", run.Stdout)
	}
	for i, want := range []bool{false, false, true} {
		if got := exists(t, mods[i]); got != want {
			t.Errorf("module cache of project %d exists = %v, want %v\n%s", i+1, got, want, run.Stdout)
		}
	}
	// The newest project's next job is still warm.
	j := newJob(t, jobSpec{ProjectID: projects[2], Config: pool.config("")})
	if r := j.prepare(); r.Code != 0 || !strings.Contains(r.Stderr, "Cache go /go/pkg/mod: warm, 1.0 MiB") {
		t.Errorf("prepare after the GC: %s", r)
	}
}

// TestCacheGCKeepsVolumeInUse: the budget is exceeded while a job runs
// with the least recently used caches mounted; `cache gc` keeps those (the
// engine refuses to remove them), evicts the next ones instead, and the
// running job goes on with its cache intact.
func TestCacheGCKeepsVolumeInUse(t *testing.T) {
	pool := newGCPool(t)
	running, idle := nextJobID(), nextJobID()
	fillCache(t, pool, running)
	fillCache(t, pool, idle)

	j := newJob(t, jobSpec{ProjectID: running, Config: pool.config("")})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	runningVols, idleVols := pool.volumes(t, running), pool.volumes(t, idle)
	pool.age(t, runningVols, 2*time.Hour) // the running job's caches look oldest
	pool.age(t, idleVols, time.Hour)

	gc := newJob(t, jobSpec{Config: pool.config(`budget = "100KiB"`)})
	r := gc.call("cache", "gc")
	if r.Code != 0 {
		t.Fatalf("cache gc: %s", r)
	}
	if !strings.Contains(r.Stdout, "Kept "+runningVols["/go/pkg/mod"]+" (") || !strings.Contains(r.Stdout, "in use by a job's container") {
		t.Errorf("cache gc should say it kept the running job's cache:\n%s", r.Stdout)
	}
	if exists(t, idleVols["/go/pkg/mod"]) {
		t.Errorf("the idle project's cache survived:\n%s", r.Stdout)
	}
	step := j.run("build_script", runnerScript("wc -c < /go/pkg/mod/blob\n"))
	if step.Code != 0 || strings.TrimSpace(step.Stdout) != fmt.Sprint(mib) {
		t.Errorf("the running job's cache after the GC: %s", step)
	}
	if c := j.cleanup(); c.Code != 0 {
		t.Fatalf("cleanup: %s", c)
	}
	if volumePoolOf(t, runningVols["/go/pkg/mod"]) != pool.name {
		t.Errorf("the running job's cache volume is gone or lost its labels after the job")
	}
}

// TestCacheGCLease: a volume a prepare claimed moments ago is not evicted
// even when no container holds it (here: the job was cleaned up); once
// the claim is old, it is.
func TestCacheGCLease(t *testing.T) {
	pool := newGCPool(t)
	project := nextJobID()
	fillCache(t, pool, project)
	mod := pool.volumes(t, project)["/go/pkg/mod"]

	gc := newJob(t, jobSpec{Config: pool.config(`budget = "1KiB"`)})
	if r := gc.call("cache", "gc"); r.Code != 0 || !exists(t, mod) || strings.Contains(r.Stdout, "Evicted") {
		t.Fatalf("cache gc right after the job: %s", r)
	}
	pool.age(t, pool.volumes(t, project), time.Minute)
	if r := gc.call("cache", "gc"); r.Code != 0 || exists(t, mod) {
		t.Fatalf("cache gc once the claim expired: %s", r)
	}
}

// TestCacheReportsAndMetrics: the job log says after the step how much the
// module cache grew; the metrics file counts the first job's misses, the
// second job's hits, the measured sizes and the GC's evictions.
func TestCacheReportsAndMetrics(t *testing.T) {
	pool := newGCPool(t)
	prom := filepath.Join(t.TempDir(), "warmcache.prom")
	cfg := strings.Replace(pool.config(""), "[cache]\n", fmt.Sprintf("[cache]\nmetrics_file = %q\n", prom), 1)
	project := nextJobID()

	first := newJob(t, jobSpec{ProjectID: project, Config: cfg})
	if r := first.prepare(); r.Code != 0 || !strings.Contains(r.Stderr, "Cache go /go/pkg/mod: cold") {
		t.Fatalf("prepare: %s", r)
	}
	step := first.run("build_script", runnerScript(fmt.Sprintf("head -c %d /dev/urandom > /go/pkg/mod/blob\n", 2*mib)))
	if step.Code != 0 || !regexp.MustCompile(`Cache go /go/pkg/mod: grew by 2\.0 MiB to 2\.0 MiB\n`).MatchString(step.Stderr) {
		t.Errorf("the step's log should say how much the module cache grew:\n%s", step)
	}
	if r := first.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	second := newJob(t, jobSpec{ProjectID: project, Config: cfg})
	if r := second.prepare(); r.Code != 0 || !strings.Contains(r.Stderr, "Cache go /go/pkg/mod: warm, 2.0 MiB") {
		t.Fatalf("second prepare: %s", r)
	}
	step = second.run("build_script", runnerScript("true\n"))
	if !strings.Contains(step.Stderr, "Cache go /go/pkg/mod: unchanged, 2.0 MiB") {
		t.Errorf("the second step's log:\n%s", step)
	}
	if r := second.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	mod := pool.volumes(t, project)["/go/pkg/mod"]
	text := readFile(t, prom)
	// The cache series are per profile and trust: the go profile's two
	// volumes (module and build caches) add up; no volume or path label.
	for _, want := range []string{
		`warmcache_cache_hits_total{profile="go",trust="unprotected"} 2`,
		`warmcache_cache_misses_total{profile="go",trust="unprotected"} 2`,
		`warmcache_cache_volumes{profile="go",trust="unprotected"} 2`,
		`warmcache_cache_hits_total{profile="cache-dir",trust="unprotected"} 1`,
		`warmcache_cache_evictions_total 0`,
		`warmcache_stage_duration_seconds_count{stage="prepare"} 2`,
		`warmcache_stage_duration_seconds_count{stage="pull"} 2`,
		`warmcache_oom_kills_total 0`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics file lacks %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, mod) || strings.Contains(text, "path=") || !strings.Contains(text, "warmcache_build_info{") {
		t.Errorf("metrics file names a volume or a path, or lacks the build info:\n%s", text)
	}
	size := regexp.MustCompile(`(?m)^warmcache_cache_size_bytes\{profile="go",trust="unprotected"\} (\S+)\n`).FindStringSubmatch(text)
	if size == nil {
		size = []string{"", "none"}
	}
	// 2 MiB of module file (and directories, and an empty build cache,
	// which count nothing).
	if n, err := strconv.ParseFloat(size[1], 64); err != nil || n < 2*mib || n > 2*mib+16384 {
		t.Errorf("metrics file should give the go caches' size, 2 MiB:\n%s", text)
	}

	pool.age(t, pool.volumes(t, project), time.Hour)
	gcCfg := strings.Replace(cfg, "at_stages = false\n", "at_stages = false\nmax_idle = \"30m\"\n", 1)
	gc := newJob(t, jobSpec{Config: gcCfg})
	if r := gc.call("cache", "gc"); r.Code != 0 {
		t.Fatalf("cache gc: %s", r)
	}
	text = readFile(t, prom)
	evicted := regexp.MustCompile(`(?m)^warmcache_cache_evicted_bytes_total (\S+)\n`).FindStringSubmatch(text)
	if evicted == nil {
		evicted = []string{"", "none"}
	}
	bytes, err := strconv.ParseFloat(evicted[1], 64)
	if !strings.Contains(text, "warmcache_cache_evictions_total 3\n") || !strings.Contains(text, `warmcache_cache_volumes{profile="go",trust="unprotected"} 0`+"\n") ||
		err != nil || bytes < 2*mib || bytes >= 2*mib+4096 ||
		!regexp.MustCompile(`(?m)^warmcache_cache_gc_last_success_timestamp_seconds \d`).MatchString(text) {
		t.Errorf("metrics after evicting the project's three caches (%v %v):\n%s", bytes, err, text)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestCacheGCAtStages: with at_stages on, a job's cleanup evicts what the
// budget cannot hold, least recently used first; no cache gc command runs.
func TestCacheGCAtStages(t *testing.T) {
	pool := newGCPool(t)
	old, current := nextJobID(), nextJobID()
	fillCache(t, pool, old)
	oldVols := pool.volumes(t, old)
	pool.age(t, oldVols, time.Hour)
	cfg := strings.Replace(pool.config(`budget = "1.5MiB"`), "at_stages = false\n", "at_stages = true\n", 1)
	fillCacheWith(t, cfg, current)
	if exists(t, oldVols["/go/pkg/mod"]) {
		t.Errorf("the older project's module cache survived the cleanup's pass over a 1.5 MiB budget")
	}
	if !exists(t, pool.volumes(t, current)["/go/pkg/mod"]) {
		t.Errorf("the job's own module cache was evicted")
	}
}
