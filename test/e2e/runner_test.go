package e2e

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/warmcache/warmcache/test/runnersim"
)

// Exit codes the simulated runner hands the driver.
const (
	buildFailureCode  = runnersim.BuildFailureCode
	systemFailureCode = runnersim.SystemFailureCode
)

var jobCounter atomic.Int64

// nextJobID gives every job of the suite a unique id, also across
// concurrent runs of the suite on one engine.
func nextJobID() int64 {
	return int64(os.Getpid())*1000 + jobCounter.Add(1)
}

type (
	jobSpec = runnersim.Spec
	result  = runnersim.Result
)

// job wraps a simulated runner job for tests: failures to drive the
// driver (not the driver's own failures) end the test.
type job struct {
	*runnersim.Job
	t testing.TB
}

// newJob prepares a job's temp dir and registers the cleanup stage to run
// when the test ends, as the runner always calls cleanup, followed by the
// removal of the test project's persistent caches.
func newJob(t testing.TB, spec jobSpec) *job {
	t.Helper()
	if spec.JobID == 0 {
		spec.JobID = nextJobID()
	}
	if spec.ProjectID == 0 {
		// A project of its own, so the job's caches are the test's alone.
		spec.ProjectID = spec.JobID
	}
	if spec.Image == "" {
		spec.Image = debianImage
	}
	if spec.Config == "" {
		spec.Config = defaultConfig
	}
	rj, err := runnersim.NewJob(driverBin, t.TempDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
	j := &job{Job: rj, t: t}
	// Cleanups run last-registered first: the project's caches go after
	// the cleanup of every job of the test that used them.
	if _, seen := cachesToRemove.LoadOrStore(projectOfTest{t, spec.ProjectID}, true); !seen {
		t.Cleanup(func() {
			removeProjectCaches(t, spec.ProjectID)
			cachesToRemove.Delete(projectOfTest{t, spec.ProjectID})
		})
	}
	t.Cleanup(func() {
		// The detached removal cleanup starts must be over before the
		// project's caches, which the job's containers mount, can go.
		if r := j.cleanup(); r.Code != 0 {
			t.Errorf("cleanup at test end: %s", r)
		}
	})
	return j
}

// projectOfTest is a project whose caches a test will remove when it ends.
type projectOfTest struct {
	t       testing.TB
	project int64
}

var cachesToRemove sync.Map

func (j *job) call(args ...string) result {
	j.t.Helper()
	r, err := j.Call(args...)
	if err != nil {
		j.t.Fatal(err)
	}
	return r
}

func (j *job) prepare() result { return j.call("prepare") }

// cleanup calls the cleanup stage and, when it succeeded, waits (polls,
// with a deadline: see jobResources) until the detached process it
// started has removed the job's resources, so that what a test does next
// (a GC pass, the project's next job, a look at the volumes) finds them
// gone, as before that removal went to the background. A test of what
// happens meanwhile calls j.call("cleanup").
func (j *job) cleanup() result {
	r := j.call("cleanup")
	if r.Code == 0 {
		jobResources(j.t, j)
	}
	return r
}

func (j *job) run(stage, script string) result {
	j.t.Helper()
	r, err := j.Run(stage, script)
	if err != nil {
		j.t.Fatal(err)
	}
	return r
}

// runnerScript wraps body in the runner's script shape.
func runnerScript(body string) string { return runnersim.Script(body) }

// gitServer is the suite's loopback git server.
type gitServer = *runnersim.GitServer

// startGitServer serves files as group/project.git until the test ends.
func startGitServer(t testing.TB, token string, files map[string]string) gitServer {
	t.Helper()
	srv, err := runnersim.StartGitServer(token, files)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// sampleProjectDir holds the sample Go project (module example.com/sampleapp).
const sampleProjectDir = "../sampleapp"

// goModProxy serves the sample project's modules on loopback until the
// test ends and returns the URL for GOPROXY.
func goModProxy(t testing.TB) string {
	t.Helper()
	p, err := runnersim.StartModProxy(sampleProjectDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.URL
}

// sampleProjectFiles returns the sample project's files.
func sampleProjectFiles(t testing.TB) map[string]string {
	t.Helper()
	files, err := runnersim.ReadProject(sampleProjectDir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}
