package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommitOnSuccess: with commit_on_success, Maven's cache (unsafe with
// concurrent writers) is one volume for every concurrency slot; each job
// writes to a layer of its own, applied to it only when the job's steps
// succeed, and only while no other job mounts the cache: of two
// concurrent jobs, the one finishing first is discarded; a failed job
// changes nothing; deletions commit too.
func TestCommitOnSuccess(t *testing.T) {
	pool := newGCPool(t)
	cfg := strings.Replace(pool.config(""), "[cache]\n", "[cache]\nprofiles = [\"maven\"]\ncommit_on_success = true\n", 1)
	project := nextJobID()
	const repo = "/root/.m2/repository"
	show := "ls " + repo + " | sed /warmcache-stamp/d | tr '\\n' ' '; echo\n"
	start := func(slot int) *job {
		j := newJob(t, jobSpec{ProjectID: project, Slot: slot, Config: cfg})
		r := j.prepare()
		if r.Code != 0 || !strings.Contains(r.Stderr, "Cache maven "+repo+": the job writes to a layer of its own, applied to the cache only if its steps succeed") {
			t.Fatalf("prepare: %s", r)
		}
		return j
	}
	step := func(j *job, body string, wantCode int) string {
		t.Helper()
		r := j.run("build_script", runnerScript(body))
		if r.Code != wantCode {
			t.Fatalf("build_script: want exit %d, got %s", wantCode, r)
		}
		return r.Stdout
	}
	cleanup := func(j *job) {
		t.Helper()
		if r := j.cleanup(); r.Code != 0 {
			t.Fatalf("cleanup: %s", r)
		}
	}

	// Two slots at once, both succeed: the one that finishes while the
	// other still mounts the cache is not applied under it; the other is.
	a, b := start(0), start(1)
	step(a, "echo lost > "+repo+"/lost.jar\n", 0)
	if out := step(b, show+"echo b > "+repo+"/b.jar\n", 0); out != "\n" {
		t.Errorf("slot 1 sees slot 0's uncommitted write: %q", out)
	}
	cleanup(a)
	cleanup(b)
	// A job alone commits.
	alone := start(0)
	if out := step(alone, show+"echo a > "+repo+"/a.jar\n", 0); out != "b.jar \n" {
		t.Errorf("after two concurrent jobs: %q, want only the last one's write", out)
	}
	cleanup(alone)

	// A failing job: its new file, change and deletion are all dropped.
	failing := start(0)
	if out := step(failing, show+"echo changed > "+repo+"/a.jar; rm "+repo+"/b.jar; echo f > "+repo+"/f.jar\nexit 3\n", buildFailureCode); out != "a.jar b.jar \n" {
		t.Errorf("a job of slot 0 should find both committed writes: %q", out)
	}
	cleanup(failing)
	check := start(1)
	if out := step(check, show+"cat "+repo+"/a.jar\nrm "+repo+"/b.jar\n", 0); out != "a.jar b.jar \na\n" {
		t.Errorf("after the failed job: %q, want the cache as before it", out)
	}
	cleanup(check)

	// The deletion of a job that succeeded is committed.
	last := start(0)
	if out := step(last, show, 0); out != "a.jar \n" {
		t.Errorf("after a job that deleted b.jar: %q", out)
	}
	cleanup(last)
	if vols := pool.volumes(t, project); len(vols) != 2 {
		t.Errorf("cache volumes %v, want cache_dir and one Maven cache for both slots", vols)
	}
	// Records (and their locks) are kept for caches only, never for the
	// layers that go with each job.
	records, err := os.ReadDir(filepath.Join(pool.stateDir, "caches"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if strings.Contains(r.Name(), "-j") {
			t.Errorf("state directory holds %s, a job's volume", r.Name())
		}
	}
}
