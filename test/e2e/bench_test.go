package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// BenchmarkBareJob measures the per-job overhead every pipeline pays: a
// bare job (prepare_script, get_sources with GIT_STRATEGY=none,
// build_script, cleanup_file_variables) through config, prepare, run and
// cleanup, against `docker run --rm IMAGE true`, alternating the two in
// the same loop so both see the same machine load. It reports medians and
// their ratio (target: at most 2x).
func BenchmarkBareJob(b *testing.B) {
	var jobTimes, runTimes []time.Duration
	calls := map[string][]time.Duration{}
	trace := startAPITrace(b)
	var traced []tracedJob
	for i := 0; i < b.N; i++ {
		start := time.Now()
		out, err := exec.Command("docker", "run", "--rm", debianImage, "true").CombinedOutput()
		if err != nil {
			b.Fatalf("docker run: %v\n%s", err, out)
		}
		runTimes = append(runTimes, time.Since(start))

		total, perCall := bareJobCalls(b, jobSpec{})
		jobTimes = append(jobTimes, total)
		for call, d := range perCall {
			calls[call] = append(calls[call], d)
		}
		traced = append(traced, tracedBareJob(b, trace))
	}
	jm, rm := median(jobTimes), median(runTimes)
	b.ReportMetric(float64(jm.Milliseconds()), "ms/bare-job")
	b.ReportMetric(float64(rm.Milliseconds()), "ms/docker-run")
	b.ReportMetric(float64(jm)/float64(rm), "bare-job/docker-run")
	// Where the time goes: the median of each driver call (run: the four
	// stages together).
	for _, call := range []string{"config", "prepare", "run", "cleanup"} {
		b.ReportMetric(float64(median(calls[call]).Milliseconds()), "ms/"+call)
	}
	// Where the time goes within each call: the Engine API calls of the
	// traced job of median wall time (the same job through a tracing
	// proxy, run beside the timed one).
	slices.SortFunc(traced, func(a, b tracedJob) int { return int(a.wall - b.wall) })
	m := traced[len(traced)/2]
	var out strings.Builder
	fmt.Fprintf(&out, "Engine API calls of the median traced bare job (%d ms):\n", m.wall.Milliseconds())
	for i, s := range m.stages {
		out.WriteString(s.format(m.walls[i]))
	}
	fmt.Print(out.String())
}

// tracedJob is one bare job's Engine API calls, stage by stage.
type tracedJob struct {
	wall   time.Duration
	stages []stageTrace
	walls  []time.Duration
}

// tracedBareJob runs the bare job of bareJobCalls through trace.
func tracedBareJob(b *testing.B, trace *apiTrace) tracedJob {
	b.Helper()
	j := newJob(b, jobSpec{Config: trace.config()})
	var (
		tj   tracedJob
		pids []int32
		ends []time.Time
	)
	call := func(stage string, args ...string) {
		cmd := j.Command(args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		pid := int32(cmd.Process.Pid)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("traced %s: %v\n%s", stage, err, out.String())
		}
		tj.walls = append(tj.walls, time.Since(start))
		tj.stages = append(tj.stages, stageTrace{Stage: stage, Start: start})
		pids, ends = append(pids, pid), append(ends, time.Now())
	}
	trace.take()
	start := time.Now()
	call("config", "config")
	call("prepare", "prepare")
	for _, st := range bareStages {
		path, err := j.WriteScript(runnerScript(st.body))
		if err != nil {
			b.Fatal(err)
		}
		call(st.stage, "run", path, st.stage)
	}
	call("cleanup", "cleanup")
	tj.wall = time.Since(start)
	// The detached helper cleanup starts ends a moment later.
	for deadline := time.Now().Add(removalBound); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		rs, err := eng.List(context.Background(), map[string]string{naming.LabelJobID: fmt.Sprint(j.ID)})
		if err != nil {
			b.Fatal(err)
		}
		if len(rs) == 0 && trace.idle() {
			break
		}
	}
	tj.stages = split(trace.take(), tj.stages, pids, ends)
	return tj
}

// bareStages are the run stages of a bare job and their script bodies.
var bareStages = []struct{ stage, body string }{
	{"prepare_script", "echo Running on $(hostname)\n"},
	{"get_sources", "echo Skipping Git repository setup\n"},
	{"build_script", "echo hello\n"},
	{"cleanup_file_variables", "rm -f /builds/group/project.tmp/gitlab_runner_env\n"},
}

// bareJob runs one bare job of spec through all four stages and returns
// its wall time as the runner would see it.
func bareJob(b *testing.B, spec jobSpec) time.Duration {
	b.Helper()
	total, _ := bareJobCalls(b, spec)
	return total
}

// bareJobCalls is bareJob that also times each kind of driver call.
func bareJobCalls(b *testing.B, spec jobSpec) (time.Duration, map[string]time.Duration) {
	b.Helper()
	j := newJob(b, spec)
	calls := map[string]time.Duration{}
	timed := func(call string, f func() result) {
		t := time.Now()
		mustPass(b, f())
		calls[call] += time.Since(t)
	}
	start := time.Now()
	timed("config", func() result { return j.call("config") })
	timed("prepare", j.prepare)
	for _, st := range bareStages {
		timed("run", func() result { return j.run(st.stage, runnerScript(st.body)) })
	}
	// The stage as the runner waits for it; then, untimed, the removal it
	// hands to the background, so that the next job starts as after a
	// runner's idle moment (the slot's network empty).
	timed("cleanup", func() result { return j.call("cleanup") })
	total := time.Since(start)
	if left := jobResources(b, j); len(left) != 0 {
		b.Fatalf("after cleanup the job still has %v", left)
	}
	return total, calls
}

func mustPass(b *testing.B, r result) {
	b.Helper()
	if r.Code != 0 {
		b.Fatalf("driver call failed: %s", r)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkGoProject runs the sample Go project's job through all four
// stages, side by side in one run: cold (empty caches), warm (the same
// project again, with no module proxy at all), and the Docker executor's
// alternative of restoring and archiving the same caches as a zip archive
// in every job (what GitLab's `cache:` keyword does, with GOPATH and
// GOCACHE inside the project). It reports wall times and the ratios the
// product promises: the warm build at least 20x faster than the cold one,
// and warmcache's own cache cost under 5% of the zip round trip.
func BenchmarkGoProject(b *testing.B) {
	proxy, srv := goModProxy(b), sampleGitServer(b)
	src := b.TempDir()
	for name, body := range sampleProjectFiles(b) {
		path := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	build := "go build -o /dev/null ./...\n"
	// The zip alternative keeps its caches in the project, as GitLab's
	// `cache:` requires, and carries them in /cache between jobs.
	zipEnv := "export GOMODCACHE=$CI_PROJECT_DIR/.go/mod GOCACHE=$CI_PROJECT_DIR/.go/build GOFLAGS='-mod=mod -modcacherw'\n"
	restore := zipEnv + "if [ -f /cache/bench.zip ]; then unzip -q /cache/bench.zip; fi\n"
	archive := zipEnv + "rm -f /cache/bench.zip && zip -q -r /cache/bench.zip .go\n"
	zipConfig := hostNetworkConfig + "[cache]\nprofiles = []\n" // only /cache persists

	warmCalls := map[string][]time.Duration{} // per call of the warm job
	var plains []time.Duration
	defer func() {
		// Where the warm job's time goes, against the plain build's.
		if len(plains) == 0 {
			return
		}
		var line strings.Builder
		for _, call := range []string{"config", "prepare", "get_sources", "restore_cache", "build_script", "archive_cache", "cleanup_file_variables", "cleanup", "job"} {
			fmt.Fprintf(&line, " %s %d ms,", call, median(warmCalls[call]).Milliseconds())
		}
		fmt.Printf("warm job calls (medians of %d):%s plain build %d ms\n", len(plains), strings.TrimSuffix(line.String(), ","), median(plains).Milliseconds())
	}()
	// The ratio of the medians over every round, not the last round's.
	defer func() {
		if len(plains) > 0 {
			b.ReportMetric(float64(median(warmCalls["job"]))/float64(median(plains)), "warm-job/plain-build")
		}
	}()
	for i := 0; i < b.N; i++ {
		project := nextJobID()
		cold := goProjectJob(b, srv, proxy, jobSpec{ProjectID: project}, "", build, "")
		warm := goProjectJob(b, srv, proxy, jobSpec{ProjectID: project, Vars: map[string]string{"GOPROXY": "off"}}, "", build, "")
		plain := plainGoBuild(b, project, src)
		plains = append(plains, plain)
		for call, d := range warm {
			warmCalls[call] = append(warmCalls[call], d)
		}
		off := goProjectJob(b, srv, proxy, jobSpec{ProjectID: project, Config: hostNetworkConfig + "[cache]\nenabled = false\n", Vars: map[string]string{"GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOMODCACHE": "/nonexistent"}}, "", "true\n", "")

		zipProject := nextJobID()
		goProjectJob(b, srv, proxy, jobSpec{ProjectID: zipProject, Config: zipConfig}, restore, zipEnv+build, archive) // primes the archive
		zipped := goProjectJob(b, srv, proxy, jobSpec{ProjectID: zipProject, Config: zipConfig, Vars: map[string]string{"GOPROXY": "off"}}, restore, zipEnv+build, archive)

		// warmcache's cache cost: what prepare and cleanup of the warm job
		// take beyond those of the same job with caches off.
		cacheCost := warm["prepare"] + warm["cleanup"] - off["prepare"] - off["cleanup"]
		zipRoundTrip := zipped["restore_cache"] + zipped["archive_cache"]
		b.ReportMetric(cold["job"].Seconds(), "s/cold-job")
		b.ReportMetric(warm["job"].Seconds(), "s/warm-job")
		b.ReportMetric(zipped["job"].Seconds(), "s/zip-job")
		b.ReportMetric(float64(cold["build_script"])/float64(warm["build_script"]), "cold-build/warm-build")
		b.ReportMetric(float64(zipped["job"])/float64(warm["job"]), "zip-job/warm-job")
		b.ReportMetric(plain.Seconds(), "s/plain-build")
		b.ReportMetric(float64(cacheCost.Milliseconds()), "ms/cache-cost")
		b.ReportMetric(float64(zipRoundTrip.Milliseconds()), "ms/zip-round-trip")
		b.ReportMetric(100*float64(cacheCost)/float64(zipRoundTrip), "cache-cost-%-of-zip")
		removeProjectCaches(b, project)
		removeProjectCaches(b, zipProject)
	}
}

// plainGoBuild is the engine's floor for the warm job: `docker run --rm`
// of the job's image, on the host network as the job, with the project's
// cache volumes mounted where the job has them and the sample project
// bound in, running the same go build.
func plainGoBuild(b *testing.B, project int64, src string) time.Duration {
	b.Helper()
	rs, err := eng.List(context.Background(), map[string]string{naming.LabelCacheProjectID: fmt.Sprint(project)})
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"run", "--rm", "--network", "host", "-v", src + ":/src", "-w", "/src",
		"-e", "GOPROXY=off", "-e", "GOSUMDB=off", "-e", "GOFLAGS=-mod=mod",
		"-e", "GOMODCACHE=/go/pkg/mod", "-e", "GOCACHE=/root/.cache/go-build"}
	for _, r := range rs {
		if path := r.Labels[naming.LabelCachePath]; r.Type == engine.Volume && path != "" {
			args = append(args, "-v", r.Name+":"+path)
		}
	}
	start := time.Now()
	out, err := exec.Command("docker", append(args, debianImage, "go", "build", "-o", "/dev/null", "./...")...).CombinedOutput()
	if err != nil {
		b.Fatalf("docker run: %v\n%s", err, out)
	}
	return time.Since(start)
}

// goProjectJob runs one job of the sample project through every stage and
// returns the wall time of each call, and of the whole job under "job".
// restore and archive, when set, run as the cache stages.
func goProjectJob(b *testing.B, srv gitServer, proxy string, spec jobSpec, restore, build, archive string) map[string]time.Duration {
	b.Helper()
	if spec.Config == "" {
		spec.Config = hostNetworkConfig
	}
	vars := map[string]string{"GOPROXY": proxy, "GOSUMDB": "off", "GOFLAGS": "-mod=mod"}
	for k, v := range spec.Vars {
		vars[k] = v
	}
	spec.Vars = vars
	j := newJob(b, spec)
	times := map[string]time.Duration{}
	timed := func(name string, f func() result) {
		start := time.Now()
		r := f()
		times[name] = time.Since(start)
		if r.Code != 0 {
			b.Fatalf("%s: %s", name, r)
		}
	}
	start := time.Now()
	timed("config", func() result { return j.call("config") })
	timed("prepare", j.prepare)
	for _, st := range []struct{ stage, script string }{
		{"get_sources", sampleScript(b, "get_sources", srv)},
		{"restore_cache", j.Script(restore)},
		{"build_script", j.Script(build)},
		{"archive_cache", j.Script(archive)},
		{"cleanup_file_variables", sampleScript(b, "cleanup_file_variables", srv)},
	} {
		timed(st.stage, func() result { return j.run(st.stage, st.script) })
	}
	// As the runner waits for it: the stage, not the background removal
	// it hands over, which is waited for untimed (the next job of the
	// project finds its caches free).
	timed("cleanup", func() result { return j.call("cleanup") })
	times["job"] = time.Since(start)
	jobResources(b, j)
	return times
}
