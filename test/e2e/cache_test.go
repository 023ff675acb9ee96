package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// goJob is a job of the sample Go project: its sources come from a git
// server on loopback through the runner's real get_sources script, its
// modules from a module proxy on loopback.
type goJob struct {
	*job
	srv gitServer
}

func newGoJob(t *testing.T, srv gitServer, proxy string, spec jobSpec) goJob {
	t.Helper()
	spec.Config = hostNetworkConfig
	vars := map[string]string{"GOPROXY": proxy, "GOSUMDB": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
	for k, v := range spec.Vars {
		vars[k] = v
	}
	spec.Vars = vars
	return goJob{job: newJob(t, spec), srv: srv}
}

// start runs prepare and get_sources, returning prepare's job log.
func (g goJob) start() string {
	g.t.Helper()
	r := g.prepare()
	if r.Code != 0 {
		g.t.Fatalf("prepare: %s", r)
	}
	if s := g.run("get_sources", sampleScript(g.t, "get_sources", g.srv)); s.Code != 0 {
		g.t.Fatalf("get_sources: %s", s)
	}
	return r.Stderr
}

// step runs a build_script with the job's variables exported, as the
// runner's script does, and fails the test unless it passes.
func (g goJob) step(body string) result {
	g.t.Helper()
	r := g.run("build_script", g.Script(body))
	if r.Code != 0 {
		g.t.Fatalf("build_script: %s", r)
	}
	return r
}

// compileRE matches one compiler invocation in `go build -x` output.
var compileRE = regexp.MustCompile(`(?m)/compile -o .* -p (\S+) `)

// compiled lists the packages `go build -x` compiled (its commands are on
// stderr, redirected to stdout by the step).
func compiled(out string) []string {
	var pkgs []string
	for _, m := range compileRE.FindAllStringSubmatch(out, -1) {
		pkgs = append(pkgs, m[1])
	}
	return pkgs
}

func sampleGitServer(t testing.TB) gitServer {
	return startGitServer(t, sampleToken, sampleProjectFiles(t))
}

// TestWarmGoCache: the second job of a project finds every module and
// every compiled dependency from the first: it builds with GOPROXY=off and
// compiles no dependency.
func TestWarmGoCache(t *testing.T) {
	proxy, srv := goModProxy(t), sampleGitServer(t)
	project := nextJobID()

	cold := newGoJob(t, srv, proxy, jobSpec{ProjectID: project})
	log := cold.start()
	if !regexp.MustCompile(`Cache go /go/pkg/mod: cold \(new volume warmcache-go-[0-9a-f]{12}\)`).MatchString(log) {
		t.Errorf("first prepare should report a cold module cache:\n%s", log)
	}
	began := time.Now()
	first := cold.step("go build -x -o /dev/null ./... 2>&1\n")
	coldTime := time.Since(began)
	if n := len(compiled(first.Stdout)); n < 25 {
		t.Fatalf("cold build compiled only %d packages; the sample project is too small to prove anything:\n%s", n, first.Stdout)
	}
	if r := cold.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}

	warm := newGoJob(t, srv, proxy, jobSpec{ProjectID: project, Vars: map[string]string{"GOPROXY": "off"}})
	log = warm.start()
	if !regexp.MustCompile(`Cache go /go/pkg/mod: warm, [0-9.]+ [KMG]iB, last used \d+[smh] ago`).MatchString(log) {
		t.Errorf("second prepare should report a warm, measured module cache:\n%s", log)
	}
	began = time.Now()
	second := warm.step("go env GOPROXY GOMODCACHE GOCACHE\ngo build -x -o /dev/null ./... 2>&1\n")
	warmTime := time.Since(began)
	if !strings.HasPrefix(second.Stdout, "off\n/go/pkg/mod\n/root/.cache/go-build\n") {
		t.Errorf("go env in the warm job:\n%s", second.Stdout)
	}
	if pkgs := compiled(second.Stdout); len(pkgs) != 0 {
		t.Errorf("warm build compiled %v; want everything from the build cache", pkgs)
	}
	t.Logf("go build: cold %s, warm %s (%.1fx faster)", coldTime.Round(time.Millisecond), warmTime.Round(time.Millisecond), float64(coldTime)/float64(warmTime))
}

// TestCacheIsolation: another project's job sees an empty cache; an
// unprotected job of the same project sees none of the protected job's
// cache and cannot write into it.
func TestCacheIsolation(t *testing.T) {
	project, other := nextJobID(), nextJobID()
	list := "ls -A /go/pkg/mod /root/.cache/go-build /cache | sed -e '/^\\//d' -e '/^$/d' -e '/warmcache-stamp/d' | sort | tr '\\n' ' '; echo\n"
	write := func(tag string) string {
		return "echo " + tag + " > /go/pkg/mod/" + tag + "; echo " + tag + " > /root/.cache/go-build/" + tag + "; echo " + tag + " > /cache/" + tag + "\n"
	}
	step := func(spec jobSpec, body string) string {
		t.Helper()
		spec.Image = busyboxImage
		j := newJob(t, spec)
		if r := j.prepare(); r.Code != 0 {
			t.Fatalf("prepare: %s", r)
		}
		r := j.run("build_script", runnerScript(body))
		if r.Code != 0 {
			t.Fatalf("build_script: %s", r)
		}
		if c := j.cleanup(); c.Code != 0 {
			t.Fatalf("cleanup: %s", c)
		}
		return r.Stdout
	}

	if got := step(jobSpec{ProjectID: project, Protected: true}, write("protected")+list); got != "protected protected protected \n" {
		t.Fatalf("protected job sees %q", got)
	}
	if got := step(jobSpec{ProjectID: other, Protected: true}, list); got != "\n" {
		t.Errorf("another project's job sees %q, want an empty cache", got)
	}
	if got := step(jobSpec{ProjectID: project, Protected: false}, list+write("unprotected")); got != "\n" {
		t.Errorf("unprotected job sees %q of the protected cache", got)
	}
	if got := step(jobSpec{ProjectID: project, Protected: true}, list); got != "protected protected protected \n" {
		t.Errorf("after the unprotected job, the protected job sees %q", got)
	}
}

// TestParallelJobsShareCache: four concurrent jobs of one project (four
// concurrency slots) mount one module cache volume, all pass, and the cache
// verifies afterwards.
func TestParallelJobsShareCache(t *testing.T) {
	proxy, srv := goModProxy(t), sampleGitServer(t)
	project := nextJobID()
	volumeRE := regexp.MustCompile(`Cache go /go/pkg/mod: \w+.*(warmcache-go-[0-9a-f]{12})`)

	var wg sync.WaitGroup
	volumes := make([]string, 4)
	for slot := range 4 {
		g := newGoJob(t, srv, proxy, jobSpec{ProjectID: project, Slot: slot})
		wg.Go(func() {
			r := g.prepare()
			if r.Code != 0 {
				t.Errorf("slot %d prepare: %s", slot, r)
				return
			}
			if m := volumeRE.FindStringSubmatch(r.Stderr); m != nil {
				volumes[slot] = m[1]
			}
			if s := g.run("get_sources", sampleScript(t, "get_sources", srv)); s.Code != 0 {
				t.Errorf("slot %d get_sources: %s", slot, s)
				return
			}
			if s := g.run("build_script", g.Script("go mod download && go build -o /dev/null ./...\n")); s.Code != 0 {
				t.Errorf("slot %d build: %s", slot, s)
			}
		})
	}
	wg.Wait()
	if volumes[0] == "" || volumes[1] != volumes[0] || volumes[2] != volumes[0] || volumes[3] != volumes[0] {
		t.Errorf("the four slots mounted %v, want one shared volume", volumes)
	}
	verify := newGoJob(t, srv, proxy, jobSpec{ProjectID: project, Vars: map[string]string{"GOPROXY": "off"}})
	verify.start()
	if r := verify.step("go mod verify\n"); !strings.Contains(r.Stdout, "all modules verified") {
		t.Errorf("go mod verify: %s", r)
	}
}

// TestYAMLVariableWins: a variable the job sets in its YAML beats the
// driver's, because the script exports it after the container starts.
func TestYAMLVariableWins(t *testing.T) {
	j := newJob(t, jobSpec{Vars: map[string]string{"GOMODCACHE": "/elsewhere"}})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", j.Script("go env GOMODCACHE GOCACHE\n"))
	if r.Code != 0 || r.Stdout != "/elsewhere\n/root/.cache/go-build\n" {
		t.Errorf("go env: %s", r)
	}
}

// TestNonRootUserWritesCache: a job running as uid 1000 (image:docker:user)
// can write to fresh cache volumes and to its builds directory, and a
// later root job of the project finds what it wrote. /root is closed to
// other users, so the build cache is mounted elsewhere for them.
func TestNonRootUserWritesCache(t *testing.T) {
	project := nextJobID()
	j := newJob(t, jobSpec{ProjectID: project, User: "1000"})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", runnerScript("id -u\necho x > built.txt\nfor d in \"$(go env GOMODCACHE)\" \"$(go env GOCACHE)\"; do echo x > $d/by-uid-1000 && echo wrote $d; done\n"))
	want := "1000\nwrote /go/pkg/mod\nwrote /var/cache/warmcache/root/.cache/go-build\n"
	if r.Code != 0 || r.Stdout != want {
		t.Errorf("want %q, got %s", want, r)
	}
	if c := j.cleanup(); c.Code != 0 {
		t.Fatalf("cleanup: %s", c)
	}
	root := newJob(t, jobSpec{ProjectID: project})
	if r := root.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r = root.run("build_script", runnerScript("cat /go/pkg/mod/by-uid-1000 /root/.cache/go-build/by-uid-1000\n"))
	if r.Code != 0 || r.Stdout != "x\nx\n" {
		t.Errorf("root job of the same project: %s", r)
	}
}

// TestCacheList: `warmcache cache ls` shows the project's volumes with
// profile, path, trust and a measured size after cleanup.
func TestCacheList(t *testing.T) {
	j := newJob(t, jobSpec{Image: busyboxImage, Protected: true})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if r := j.run("build_script", runnerScript("head -c 3000 /dev/zero > /go/pkg/mod/blob\n")); r.Code != 0 {
		t.Fatalf("build_script: %s", r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	r := j.call("cache", "ls")
	if r.Code != 0 {
		t.Fatalf("cache ls: %s", r)
	}
	row := regexp.MustCompile(`(?m)^warmcache-go-[0-9a-f]{12}\s+group/project\s+go\s+/go/pkg/mod\s+protected\s+(\S+ \S+)\s+(\d+)s ago$`)
	var found bool
	for _, m := range row.FindAllStringSubmatch(r.Stdout, -1) {
		if m[1] == "2.9 KiB" || strings.HasPrefix(m[1], "3.") {
			found = true
		}
	}
	if !found {
		t.Errorf("cache ls has no measured row for the module cache:\n%s", r.Stdout)
	}
	js := j.call("cache", "ls", "--json")
	if js.Code != 0 || !strings.Contains(js.Stdout, `"project_id": "`+strconv.FormatInt(j.ID, 10)+`"`) {
		t.Errorf("cache ls --json: %s", js)
	}
}
