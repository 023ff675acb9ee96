package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// gitConfig turns the warm git checkout on (and no other tool cache).
const gitConfig = hostNetworkConfig + "[cache]\nprofiles = [\"git\"]\n"

// History of the test repository: enough commits and data that a clone
// costs what a real project's does (the sample fetches with depth 20, and
// the tip's tree holds every file).
const (
	historyCommits  = 300
	historyFileSize = 32 << 10
)

// Lines of the runner's get_sources script: git init says which it found.
const (
	freshLine  = "Initialized empty Git repository"
	reusedLine = "Reinitialized existing Git repository"
)

// checkoutRE finds the checkout a prepare claimed in its job log, and
// storeRE the project's git object store.
var (
	checkoutRE = regexp.MustCompile(`Cache git /builds: (\w+).*(warmcache-git-[0-9a-f]{12})`)
	storeRE    = regexp.MustCompile(`Cache git /var/cache/warmcache/git: (\w+).*(warmcache-git-[0-9a-f]{12})`)
)

// storeOf is the git object store a prepare's job log names, and whether
// it was warm.
func storeOf(t testing.TB, prep string) (string, bool) {
	t.Helper()
	m := storeRE.FindStringSubmatch(prep)
	if m == nil {
		t.Fatalf("prepare claimed no git object store:\n%s", prep)
	}
	return m[2], m[1] == "warm"
}

// gitSizes are the sizes cache ls reports of the git volumes of project
// (checkouts and store), by volume, once the jobs' cleanups measured them.
func gitSizes(t testing.TB, j *job, project int64) map[string]int64 {
	t.Helper()
	r := j.call("cache", "ls", "--json")
	if r.Code != 0 {
		t.Fatalf("cache ls: %s", r)
	}
	var rows []struct {
		Volume    string `json:"volume"`
		ProjectID string `json:"project_id"`
		Profile   string `json:"profile"`
		SizeBytes int64  `json:"size_bytes"`
		SizeKnown bool   `json:"size_known"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil {
		t.Fatalf("cache ls --json: %v\n%s", err, r.Stdout)
	}
	out := map[string]int64{}
	for _, row := range rows {
		if row.ProjectID == fmt.Sprint(project) && row.Profile == "git" {
			if !row.SizeKnown {
				t.Fatalf("%s: size not measured", row.Volume)
			}
			out[row.Volume] = row.SizeBytes
		}
	}
	return out
}

// gitJob is a job of project on slot with the warm git checkout on.
func gitJob(t testing.TB, project int64, slot int, protected bool) *job {
	t.Helper()
	return newJob(t, jobSpec{ProjectID: project, Slot: slot, Protected: protected, Config: gitConfig})
}

// sources runs prepare and get_sources, returning prepare's job log, the
// checkout volume it names, get_sources' output and how long it took.
func sources(t testing.TB, j *job, srv gitServer) (prep, volume, out string, took time.Duration) {
	t.Helper()
	return sourcesBy(t, j, srv, sampleScript(t, "get_sources", srv))
}

// sourcesBy is sources with the get_sources script given.
func sourcesBy(t testing.TB, j *job, srv gitServer, script string) (prep, volume, out string, took time.Duration) {
	t.Helper()
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	m := checkoutRE.FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("prepare claimed no git checkout:\n%s", r.Stderr)
	}
	start := time.Now()
	s := j.run("get_sources", script)
	took = time.Since(start)
	if s.Code != 0 {
		t.Fatalf("get_sources: %s", s)
	}
	if !strings.Contains(s.Stdout, "Checking out "+srv.SHA[:8]) {
		t.Errorf("get_sources did not check out %s:\n%s", srv.SHA[:8], s)
	}
	return r.Stderr, m[2], s.Stdout, took
}

// historyServer serves the sample project with historyCommits commits of
// history on top.
func historyServer(t testing.TB, commits, size int) gitServer {
	t.Helper()
	srv := startGitServer(t, sampleToken, map[string]string{"main.go": "package main\n\nfunc main() {}\n"})
	if err := srv.AddCommits(commits, size); err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestGitFetchWarmCheckout: the first job of a project clones into its
// checkout; the second, after one new commit upstream, fetches into the
// same checkout (git init finds the repository) and builds the new
// commit. The get_sources times of both are logged side by side.
func TestGitFetchWarmCheckout(t *testing.T) {
	srv := historyServer(t, historyCommits, historyFileSize)
	project := nextJobID()

	first := gitJob(t, project, 0, false)
	prep1, vol1, out1, cold := sources(t, first, srv)
	if !strings.Contains(prep1, "Cache git /builds: cold") || !strings.Contains(out1, freshLine) {
		t.Errorf("first job: not a fresh clone into a new checkout:\n%s\n%s", prep1, out1)
	}
	if r := first.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}

	if err := srv.AddCommits(1, historyFileSize); err != nil {
		t.Fatal(err)
	}
	second := gitJob(t, project, 0, false)
	prep2, vol2, out2, warm := sources(t, second, srv)
	if vol2 != vol1 || !strings.Contains(prep2, "Cache git /builds: warm") {
		t.Errorf("second job claimed %s, want the warm %s:\n%s", vol2, vol1, prep2)
	}
	if strings.Contains(out2, freshLine) || !strings.Contains(out2, reusedLine) || !strings.Contains(out2, "Fetching changes") {
		t.Errorf("second job did not fetch into the existing repository:\n%s", out2)
	}
	r := second.run("build_script", second.Script("git rev-parse HEAD\ngit rev-list --count HEAD\n"))
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, srv.SHA+"\n") {
		t.Errorf("build sees %q, want HEAD %s", r.Stdout, srv.SHA)
	}
	// Figures only: on a repository this small the stage's fixed cost
	// (exec, the script's git config calls) is most of it; see
	// BenchmarkGitFetch for a larger one and the git part alone.
	t.Logf("get_sources of %d commits (%d KiB each, depth 20): clone %v, fetch of one new commit %v",
		historyCommits+1, historyFileSize>>10, cold.Round(time.Millisecond), warm.Round(time.Millisecond))

	// cache ls shows the checkout, a cache the cleanups above left alone.
	ls := second.call("cache", "ls")
	row := regexp.MustCompile(`(?m)^` + vol1 + `\s+group/project\s+git\s+/builds\s+unprotected\s`)
	if ls.Code != 0 || !row.MatchString(ls.Stdout) {
		t.Errorf("cache ls has no row for the checkout %s:\n%s", vol1, ls)
	}
}

// TestGitCheckoutTrust: an unprotected job that plants a hook, a config
// entry and a file in its checkout reaches neither a protected job of the
// project (which gets a checkout of its own, cloned afresh) nor, through
// the hook and config, the next unprotected job: the runner's get_sources
// removes .git/config and .git/hooks before it runs git.
func TestGitCheckoutTrust(t *testing.T) {
	srv := startGitServer(t, sampleToken, map[string]string{"main.go": "package main\n"})
	project := nextJobID()
	plant := "cd /builds/group/project\n" +
		"mkdir -p .git/hooks\n" +
		"printf '#!/bin/sh\\ntouch /builds/hook-ran\\n' > .git/hooks/post-checkout\nchmod +x .git/hooks/post-checkout\n" +
		"git config core.planted yes\necho planted > planted.txt\n"
	check := "cd /builds/group/project\nls /builds/hook-ran planted.txt 2>/dev/null || true\ngit config core.planted || true\n"

	unprotected := gitJob(t, project, 0, false)
	unprotectedPrep, unprotectedVol, _, _ := sources(t, unprotected, srv)
	unprotectedStore, _ := storeOf(t, unprotectedPrep)
	if r := unprotected.run("build_script", unprotected.Script(plant)); r.Code != 0 {
		t.Fatalf("planting: %s", r)
	}
	// The check sees what was planted where it is.
	if r := unprotected.run("build_script", unprotected.Script(check)); r.Stdout != "planted.txt\nyes\n" {
		t.Fatalf("the check does not see the planted file and config: %s", r)
	}
	if r := unprotected.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}

	protected := gitJob(t, project, 0, true)
	prep, protectedVol, out, _ := sources(t, protected, srv)
	if store, warm := storeOf(t, prep); warm || store == unprotectedStore {
		t.Errorf("the protected job got store %s (warm %v), the unprotected one's is %s", store, warm, unprotectedStore)
	}
	if protectedVol == unprotectedVol || !strings.Contains(prep, "Cache git /builds: cold") || !strings.Contains(out, freshLine) {
		t.Errorf("the protected job shares %s or found a repository:\n%s\n%s", unprotectedVol, prep, out)
	}
	if r := protected.run("build_script", protected.Script(check)); r.Code != 0 || r.Stdout != "" {
		t.Errorf("the protected job sees what the unprotected one planted: %s", r)
	}

	again := gitJob(t, project, 0, false)
	_, vol, out, _ := sources(t, again, srv)
	if vol != unprotectedVol || !strings.Contains(out, reusedLine) {
		t.Fatalf("the next unprotected job got %s, want the warm %s:\n%s", vol, unprotectedVol, out)
	}
	// The planted file goes with git clean; the hook never runs; the
	// config entry is gone with .git/config.
	if r := again.run("build_script", again.Script(check)); r.Code != 0 || r.Stdout != "" {
		t.Errorf("the next unprotected job sees what the last one planted: %s", r)
	}
}

// TestGitCheckoutConcurrentSlots: two jobs of one project at once, on
// project slots 0 and 1, each get a checkout of their own and both pass.
func TestGitCheckoutConcurrentSlots(t *testing.T) {
	srv := historyServer(t, historyCommits, historyFileSize)
	project := nextJobID()
	jobs := []*job{gitJob(t, project, 0, false), gitJob(t, project, 1, false)}
	vols := make([]string, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			r := j.prepare()
			if r.Code != 0 {
				t.Errorf("slot %d prepare: %s", i, r)
				return
			}
			if m := checkoutRE.FindStringSubmatch(r.Stderr); m != nil {
				vols[i] = m[2]
			}
			if s := j.run("get_sources", sampleScript(t, "get_sources", srv)); s.Code != 0 || !strings.Contains(s.Stdout, "Checking out "+srv.SHA[:8]) {
				t.Errorf("slot %d get_sources: %s", i, s)
				return
			}
			if s := j.run("build_script", j.Script("test \"$(git rev-parse HEAD)\" = "+srv.SHA+"\n")); s.Code != 0 {
				t.Errorf("slot %d build: %s", i, s)
			}
		})
	}
	wg.Wait()
	if vols[0] == "" || vols[1] == "" || vols[0] == vols[1] {
		t.Errorf("the slots mounted %v, want two checkouts", vols)
	}
}

// TestGitStoreSharedBySlots: the project's first job (slot 0) clones;
// once it is done its objects are in the project's store, so the first
// job of slot 1, after a new commit upstream, starts a new repository that
// borrows them (alternates) and fetches only the new commit's objects.
// Slot 0's next job fetches into its checkout, whose objects moved to the
// store. The checkouts hold no second copy of the history.
func TestGitStoreSharedBySlots(t *testing.T) {
	srv := historyServer(t, historyCommits, historyFileSize)
	project := nextJobID()

	first := gitJob(t, project, 0, false)
	prep, vol0, _, _ := sources(t, first, srv)
	store, warm := storeOf(t, prep)
	if warm {
		t.Errorf("the project's first job found a warm store:\n%s", prep)
	}
	mustSucceed(t, first.cleanup())

	if err := srv.AddCommits(1, historyFileSize); err != nil {
		t.Fatal(err)
	}
	second := gitJob(t, project, 1, false)
	prep, vol1, out, took := sources(t, second, srv)
	if !strings.Contains(out, "Fetching changes") {
		t.Errorf("slot 1 did not take the runner's fetch path:\n%s", out)
	}
	if store1, warm := storeOf(t, prep); store1 != store || !warm || vol1 == vol0 || !strings.Contains(prep, "Cache git /builds: cold") {
		t.Errorf("slot 1 got checkout %s (slot 0: %s) and store %s warm %v, want a new checkout over the warm %s:\n%s", vol1, vol0, store1, warm, store, prep)
	}
	// The new repository borrows the store's objects: its fetch brought
	// the new commit, its two trees (the root and history/) and its file
	// (loose: under fetch.unpackLimit), not the history.
	r := second.run("build_script", second.Script("cat .git/objects/info/alternates\ngit count-objects -v | grep -E '^(count|packs):'\n"+
		"git rev-parse HEAD\ngit fsck --connectivity-only --no-dangling\n"))
	want := "/var/cache/warmcache/git/objects\ncount: 4\npacks: 0\n" + srv.SHA + "\n"
	if r.Code != 0 || r.Stdout != want {
		t.Errorf("slot 1's repository: %s\nstdout %q\nwant   %q", r, r.Stdout, want)
	}
	t.Logf("slot 1's first get_sources over the project's store: %v", took.Round(time.Millisecond))
	mustSucceed(t, second.cleanup())

	if err := srv.AddCommits(1, historyFileSize); err != nil {
		t.Fatal(err)
	}
	again := gitJob(t, project, 0, false)
	_, vol, out, _ := sources(t, again, srv)
	if vol != vol0 || !strings.Contains(out, reusedLine) {
		t.Errorf("slot 0's next job got %s, want its warm %s:\n%s", vol, vol0, out)
	}
	if r := again.run("build_script", again.Script("git fsck --connectivity-only --no-dangling && git rev-parse HEAD\n")); r.Code != 0 || r.Stdout != srv.SHA+"\n" {
		t.Errorf("slot 0 after its objects moved to the store: %s", r)
	}
	mustSucceed(t, again.cleanup())

	// Each checkout holds its work tree (the tip has every file of the
	// history) and a few objects; the store the objects, once.
	sizes := gitSizes(t, again, project)
	tree := int64(historyCommits * historyFileSize)
	if sizes[store] < tree || sizes[vol0] > tree*3/2 || sizes[vol1] > tree*3/2 {
		t.Errorf("sizes %v: want the objects (over %d bytes) in store %s, not in the checkouts %s and %s", sizes, tree, store, vol0, vol1)
	}
	t.Logf("disk: store %d KiB, slot 0 %d KiB, slot 1 %d KiB", sizes[store]>>10, sizes[vol0]>>10, sizes[vol1]>>10)
}

// TestGitStoreLost: a checkout whose objects are in a store that was
// since removed (the GC evicts stores like any cache) or damaged is
// replaced by a fresh one, with one line in the job log, and the job
// clones afresh.
func TestGitStoreLost(t *testing.T) {
	for _, tt := range []struct {
		name string
		lose []string // a docker command; STORE is the store's volume
	}{
		{"evicted", []string{"volume", "rm", "STORE"}},
		{"damaged", []string{"run", "--rm", "-v", "STORE:/s", busyboxImage, "rm", "-rf", "/s/objects"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := historyServer(t, 20, 4<<10)
			project := nextJobID()
			first := gitJob(t, project, 0, false)
			prep, vol, _, _ := sources(t, first, srv)
			store, _ := storeOf(t, prep)
			mustSucceed(t, first.cleanup())
			args := slices.Clone(tt.lose)
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], "STORE", store)
			}
			if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
				t.Fatalf("docker %v: %v: %s", args, err, out)
			}

			second := gitJob(t, project, 0, false)
			prep, vol2, out, _ := sources(t, second, srv)
			want := "Cache git /builds: damaged (its object store was replaced): replaced by a fresh checkout"
			if n := strings.Count(prep, want); n != 1 || vol2 != vol {
				t.Errorf("prepare said %d times %q, claimed %s (want %s):\n%s", n, want, vol2, vol, prep)
			}
			if !strings.Contains(out, freshLine) {
				t.Errorf("get_sources did not clone afresh:\n%s", out)
			}
			if r := second.run("build_script", second.Script("git fsck --connectivity-only --no-dangling && git rev-parse HEAD\n")); r.Code != 0 || r.Stdout != srv.SHA+"\n" {
				t.Errorf("the fresh checkout: %s", r)
			}
		})
	}
}

// TestGitStoreQuota: with cache.quota, the checkout and the store are
// filesystems of their own; the objects are copied into the store, not
// linked, and a new slot still borrows them.
func TestGitStoreQuota(t *testing.T) {
	pool := newGCPool(t)
	cfg := hostNetworkConfig + fmt.Sprintf("[cache]\npool = %q\nstate_dir = %q\nquota = \"200MiB\"\nprofiles = [\"git\"]\n", pool.name, pool.stateDir)
	srv := historyServer(t, 50, historyFileSize)
	project := nextJobID()
	first := newJob(t, jobSpec{ProjectID: project, Config: cfg})
	prep, vol0, _, _ := sources(t, first, srv)
	store, _ := storeOf(t, prep)
	for _, v := range []string{vol0, store} {
		if _, _, looped := quotaImage(t, v); !looped {
			t.Fatalf("volume %s has no filesystem of its own", v)
		}
	}
	mustSucceed(t, first.cleanup())

	second := newJob(t, jobSpec{ProjectID: project, Slot: 1, Config: cfg})
	sources(t, second, srv)
	r := second.run("build_script", second.Script("git count-objects -v | grep -E '^(count|packs):'\ngit fsck --connectivity-only --no-dangling && git rev-parse HEAD\n"))
	if want := "count: 0\npacks: 0\n" + srv.SHA + "\n"; r.Code != 0 || r.Stdout != want {
		t.Errorf("slot 1 over the quota'd store: %s\nstdout %q, want %q", r, r.Stdout, want)
	}
	mustSucceed(t, second.cleanup())

	again := newJob(t, jobSpec{ProjectID: project, Config: cfg})
	_, vol, out, _ := sources(t, again, srv)
	if r := again.run("build_script", again.Script("git fsck --connectivity-only --no-dangling && git rev-parse HEAD\n")); vol != vol0 || !strings.Contains(out, reusedLine) || r.Code != 0 || r.Stdout != srv.SHA+"\n" {
		t.Errorf("slot 0 after its objects were copied to the store (%s, want %s): %s\n%s", vol, vol0, r, out)
	}
}

// TestGitCheckoutDamaged: a checkout left locked by an interrupted git
// command is replaced by a fresh one, said in one line of the next job's
// log, and that job passes.
func TestGitCheckoutDamaged(t *testing.T) {
	srv := startGitServer(t, sampleToken, map[string]string{"main.go": "package main\n"})
	project := nextJobID()
	first := gitJob(t, project, 0, false)
	_, vol, _, _ := sources(t, first, srv)
	if r := first.run("build_script", first.Script(": > /builds/group/project/.git/index.lock\necho stale > /builds/stale.txt\n")); r.Code != 0 {
		t.Fatalf("locking: %s", r)
	}
	if r := first.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}

	second := gitJob(t, project, 0, false)
	prep, vol2, out, _ := sources(t, second, srv)
	want := "Cache git /builds: damaged (group/project/.git/index.lock: a git command was interrupted): replaced by a fresh checkout"
	if n := strings.Count(prep, want); n != 1 || vol2 != vol {
		t.Errorf("prepare said %d times %q, claimed %s (want %s):\n%s", n, want, vol2, vol, prep)
	}
	if !strings.Contains(out, freshLine) {
		t.Errorf("get_sources did not clone afresh:\n%s", out)
	}
	if r := second.run("build_script", second.Script("ls /builds/stale.txt 2>/dev/null || true\n")); r.Code != 0 || r.Stdout != "" {
		t.Errorf("the fresh checkout holds the old one's files: %s", r)
	}
}

// gitTrace makes the runner's get_sources script trace its commands with
// timestamps, to time its git part alone.
func gitTrace(script string) string {
	return strings.Replace(script, "\n", "\nexec 2>&1; PS4='+ $EPOCHREALTIME '; set -x\n", 1)
}

// traceRE finds a traced command and its time.
var traceRE = regexp.MustCompile(`(?m)^\++ (\d+\.\d+) (.*)$`)

// gitPart is how long a traced get_sources spent from its git init to the
// end of its checkout and clean (the next command after git clean).
func gitPart(tb testing.TB, out string) time.Duration {
	tb.Helper()
	var from, to float64
	clean := false
	for _, m := range traceRE.FindAllStringSubmatch(out, -1) {
		at, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			tb.Fatal(err)
		}
		switch {
		case strings.HasPrefix(m[2], "git init "):
			from = at
		case strings.HasPrefix(m[2], "git clean "):
			clean = true
		case clean && to == 0:
			to = at
		}
	}
	if from == 0 || to == 0 {
		tb.Fatalf("no git init or git clean traced in:\n%s", out)
	}
	return time.Duration((to - from) * float64(time.Second))
}

// BenchmarkGitFetch: get_sources of a project's first job (a clone into a
// new checkout) against its second's (a fetch of one new commit into the
// warm checkout), on a repository of 300 commits of 128 KiB each (depth
// 20: the tip's tree holds them all), side by side: the whole stage and
// its git part (init to clean), and their cleanups (where the checkout's
// objects move to the project's store and its index is settled, waiting
// up to a second for the clock). Then the disk that 3 slots of one project
// use (3 checkouts and the project's store) against 3 full clones.
func BenchmarkGitFetch(b *testing.B) {
	// The fetch costs the same whatever the history; the clone grows
	// with it: two histories show how the ratio does.
	for _, commits := range []int{300, 600} {
		b.Run(fmt.Sprintf("commits=%d", commits), func(b *testing.B) { benchGitFetch(b, commits) })
	}
}

func benchGitFetch(b *testing.B, commits int) {
	const size = 128 << 10
	srv := historyServer(b, commits, size)
	var stage, git, cleanup [2][]time.Duration
	for i := 0; i < b.N; i++ {
		project := nextJobID()
		for n := range 2 {
			j := gitJob(b, project, 0, false)
			_, _, out, took := sourcesBy(b, j, srv, gitTrace(sampleScript(b, "get_sources", srv)))
			if fresh := strings.Contains(out, freshLine); fresh != (n == 0) {
				b.Fatalf("job %d: fresh clone %v:\n%s", n+1, fresh, out)
			}
			stage[n], git[n] = append(stage[n], took), append(git[n], gitPart(b, out))
			start := time.Now()
			mustPass(b, j.call("cleanup")) // the stage, as the runner waits for it
			cleanup[n] = append(cleanup[n], time.Since(start))
			jobResources(b, j) // the background removal, untimed
			if err := srv.AddCommits(1, size); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, m := range []struct {
		name string
		d    [2][]time.Duration
	}{{"get_sources", stage}, {"git", git}, {"cleanup", cleanup}} {
		clone, fetch := median(m.d[0]), median(m.d[1])
		b.ReportMetric(float64(clone.Milliseconds()), "ms/"+m.name+"-clone")
		b.ReportMetric(float64(fetch.Milliseconds()), "ms/"+m.name+"-fetch")
		b.ReportMetric(clone.Seconds()/fetch.Seconds(), m.name+"-clone/fetch")
		b.Logf("%-11s first job (clone) %5d ms | second job (fetch) %5d ms | %.1fx  (medians of %d)",
			m.name, clone.Milliseconds(), fetch.Milliseconds(), clone.Seconds()/fetch.Seconds(), len(m.d[0]))
	}
	b.StopTimer()
	if commits != 300 {
		return
	}
	slots, clones := gitSlotsDisk(b, srv, 3)
	b.Logf("disk of 3 slots of one project: %d MiB (3 checkouts and the store) | 3 full clones: %d MiB | %.1fx less",
		slots>>20, clones>>20, float64(clones)/float64(slots))
	b.ReportMetric(float64(slots>>20), "MiB/3-slots")
	b.ReportMetric(float64(clones>>20), "MiB/3-clones")
}

// gitSlotsDisk runs a new project's first job on slot 0, then a job on
// each other of n slots at once, and returns the disk the project's git
// volumes use (as cleanup measured them) and what n full clones would: n
// times slot 0's checkout and the store, which together hold one clone
// (slot 0's objects all moved to the store).
func gitSlotsDisk(b *testing.B, srv gitServer, n int) (slots, clones int64) {
	project := nextJobID()
	first := gitJob(b, project, 0, false)
	prep, vol0, _, _ := sources(b, first, srv)
	store, _ := storeOf(b, prep)
	mustPass(b, first.cleanup())
	var wg sync.WaitGroup
	for slot := 1; slot < n; slot++ {
		j := gitJob(b, project, slot, false)
		wg.Go(func() {
			r := j.prepare()
			if r.Code != 0 {
				b.Errorf("slot %d prepare: %s", slot, r)
				return
			}
			if s := j.run("get_sources", sampleScript(b, "get_sources", srv)); s.Code != 0 {
				b.Errorf("slot %d get_sources: %s", slot, s)
			}
			if r := j.cleanup(); r.Code != 0 {
				b.Errorf("slot %d cleanup: %s", slot, r)
			}
		})
	}
	wg.Wait()
	sizes := gitSizes(b, first, project)
	if len(sizes) != n+1 {
		b.Fatalf("git volumes of the project: %v, want %d checkouts and a store", sizes, n)
	}
	for _, s := range sizes {
		slots += s
	}
	return slots, int64(n) * (sizes[vol0] + sizes[store])
}

// TestGitCheckoutUsers: a job that runs as another user than root
// fetches into the slot's warm checkout a root job left, and works in it
// as that user (the runner hands it over); the next root job fetches into
// it again, and its build, as root, runs git there (the checkout is
// handed back, and the other user's mark is gone).
func TestGitCheckoutUsers(t *testing.T) {
	srv := startGitServer(t, sampleToken, map[string]string{"main.go": "package main\n"})
	project := nextJobID()
	root := gitJob(t, project, 0, false)
	_, vol, _, _ := sources(t, root, srv)
	mustSucceed(t, root.cleanup())

	for round := range 2 {
		other := newJob(t, jobSpec{ProjectID: project, User: "ci", Config: gitConfig})
		_, vol2, out, _ := sources(t, other, srv)
		if vol2 != vol || !strings.Contains(out, reusedLine) {
			t.Fatalf("round %d: the job as ci got %s, want the warm %s:\n%s", round, vol2, vol, out)
		}
		if r := other.run("build_script", other.Script("id -un\necho mine > mine.txt && git status --porcelain\ngit rev-parse HEAD\n")); r.Code != 0 || r.Stdout != "ci\n?? mine.txt\n"+srv.SHA+"\n" {
			t.Errorf("round %d: build as ci: %s", round, r)
		}
		mustSucceed(t, other.cleanup())

		again := gitJob(t, project, 0, false)
		_, vol3, out, _ := sources(t, again, srv)
		if vol3 != vol || !strings.Contains(out, reusedLine) {
			t.Errorf("round %d: the next root job got %s, want the warm %s:\n%s", round, vol3, vol, out)
		}
		if r := again.run("build_script", again.Script("id -un\nstat -c %U . .git\ngit status --porcelain\ngit rev-parse HEAD\n")); r.Code != 0 || r.Stdout != "root\nroot\nroot\n"+srv.SHA+"\n" {
			t.Errorf("round %d: build as root after ci: %s", round, r)
		}
		mustSucceed(t, again.cleanup())
	}
}

// mustSucceed fails t unless r passed.
func mustSucceed(t testing.TB, r result) {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("driver call failed: %s", r)
	}
}
