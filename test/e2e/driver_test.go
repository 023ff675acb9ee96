package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/test/runnersim"
)

// sampleToken is the job token of the runner sample's response.
const sampleToken = runnersim.SampleToken

// sampleStages is the order a real runner called the run stage in for a
// passing job with cache, artifacts and after_script.
var sampleStages = []string{
	"prepare_script", "get_sources", "restore_cache", "download_artifacts",
	"build_script", "after_script", "archive_cache", "upload_artifacts_on_success",
	"cleanup_file_variables",
}

// sampleScript returns a real runner's script for stage, pointed at srv.
func sampleScript(t testing.TB, stage string, srv gitServer) string {
	t.Helper()
	s, err := srv.SampleScript(stage)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const hostNetworkConfig = defaultConfig + `network_mode = "host"
`

// TestSampleJobAllStages feeds the driver every script a real runner 19.4
// generated for a passing job, in the runner's order, with a real git
// clone from a loopback server that checks the job token.
func TestSampleJobAllStages(t *testing.T) {
	srv := startGitServer(t, sampleToken, map[string]string{
		"dist/prev.txt": "artifact-from-prev-build\n",
		"main.go":       "package main\n\nfunc main() {}\n",
	})
	j := newJob(t, jobSpec{Config: hostNetworkConfig})

	cfg := j.call("config")
	if cfg.Code != 0 {
		t.Fatalf("config: %s", cfg)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(cfg.Stdout), &out); err != nil {
		t.Fatalf("config stdout is not one JSON object: %v\n%s", err, cfg.Stdout)
	}
	if out["builds_dir"] != "/builds" || out["cache_dir"] != "/cache" || out["shell"] != "bash" {
		t.Errorf("config JSON = %v", out)
	}
	if drv, _ := out["driver"].(map[string]any); drv["name"] != "warmcache" || drv["version"] != "e2e" {
		t.Errorf("driver = %v, want warmcache e2e", out["driver"])
	}

	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	outputs := map[string]result{}
	for _, stage := range sampleStages {
		r := j.run(stage, sampleScript(t, stage, srv))
		if r.Code != 0 {
			t.Fatalf("run %s: %s", stage, r)
		}
		outputs[stage] = r
	}
	if got := outputs["get_sources"].Stdout; !strings.Contains(got, "Checking out "+srv.SHA[:8]) {
		t.Errorf("get_sources did not check out the commit:\n%s", outputs["get_sources"])
	}
	build := outputs["build_script"].Stdout
	for _, want := range []string{"before_script", "artifact-from-prev-build"} {
		if !strings.Contains(build, want) {
			t.Errorf("build_script output lacks %q:\n%s", want, build)
		}
	}
	if !strings.Contains(outputs["after_script"].Stdout, "after_script: success") {
		t.Errorf("after_script output:\n%s", outputs["after_script"])
	}
	// The helper image has no gitlab-runner binary: the runner's scripts
	// say so and go on.
	if !strings.Contains(outputs["restore_cache"].Stdout, "Missing gitlab-runner. Extracting cache is disabled.") {
		t.Errorf("restore_cache output:\n%s", outputs["restore_cache"])
	}

	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// TestFailingScript: exit 3 fails the job with the build-failure code, and
// the real code lands in BUILD_EXIT_CODE_FILE; the failure stages still run.
func TestFailingScript(t *testing.T) {
	j := newJob(t, jobSpec{})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", runnerScript("echo about to fail\nexit 3\n"))
	if r.Code != buildFailureCode {
		t.Fatalf("run build_script: want exit %d, got %s", buildFailureCode, r)
	}
	if got := j.BuildExitCode(); got != "3" {
		t.Errorf("BUILD_EXIT_CODE_FILE = %q, want 3", got)
	}
	if !strings.Contains(r.Stdout, "about to fail") {
		t.Errorf("script output missing: %s", r)
	}
	for _, stage := range []string{"after_script", "archive_cache_on_failure", "upload_artifacts_on_failure", "cleanup_file_variables"} {
		if r := j.run(stage, runnerScript("echo "+stage+" ran\n")); r.Code != 0 || !strings.Contains(r.Stdout, stage+" ran") {
			t.Errorf("run %s after a failure: %s", stage, r)
		}
	}
}

// TestStreamsStayApart: stdout and stderr of the script reach the
// driver's stdout and stderr, each in order.
func TestStreamsStayApart(t *testing.T) {
	j := newJob(t, jobSpec{})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", runnerScript("for i in 1 2 3; do echo out$i; echo err$i >&2; done\nprintf no-newline-at-end\n"))
	if r.Code != 0 {
		t.Fatalf("run: %s", r)
	}
	if r.Stdout != "out1\nout2\nout3\nno-newline-at-end" {
		t.Errorf("stdout = %q", r.Stdout)
	}
	// After a step, the driver's report of the caches' growth (/cache and the two go caches).
	if !regexp.MustCompile(`^err1\nerr2\nerr3\n(Cache \S+ /\S+: unchanged, 0 B\n){3}$`).MatchString(r.Stderr) {
		t.Errorf("stderr = %q, want the script's err lines then the cache report", r.Stderr)
	}
}

// TestMissingImageNeverPull: a missing image under pull policy never is a
// system failure with a clear line; cleanup after it succeeds.
func TestMissingImageNeverPull(t *testing.T) {
	j := newJob(t, jobSpec{Image: "warmcache-test/does-not-exist:1", PullPolicy: []string{"never"}})
	r := j.prepare()
	if r.Code != systemFailureCode {
		t.Fatalf("prepare: want exit %d, got %s", systemFailureCode, r)
	}
	want := "warmcache: image warmcache-test/does-not-exist:1 is not present locally and the pull policy is never: load it on the runner host or allow another pull policy\n"
	if !strings.HasSuffix(r.Stderr, want) {
		t.Errorf("stderr = %q, want it to end with %q", r.Stderr, want)
	}
	for i := 0; i < 2; i++ {
		if r := j.cleanup(); r.Code != 0 {
			t.Fatalf("cleanup %d after failed prepare: %s", i+1, r)
		}
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// TestPullPolicyNotAllowed: a job asking for a policy the admin forbids
// fails as a build failure (retrying cannot help) naming both lists.
func TestPullPolicyNotAllowed(t *testing.T) {
	j := newJob(t, jobSpec{PullPolicy: []string{"always"}, Config: defaultConfig + `allowed_pull_policies = ["if-not-present", "never"]
`})
	r := j.prepare()
	if r.Code != buildFailureCode {
		t.Fatalf("prepare: want exit %d, got %s", buildFailureCode, r)
	}
	if !strings.Contains(r.Stderr, "pull policy [always] from image:pull_policy is not allowed; the runner allows [if-not-present never]") {
		t.Errorf("stderr = %q", r.Stderr)
	}
}

// TestShOnlyImage: a busybox image with no bash runs the runner's bash-
// shaped script through /bin/sh.
func TestShOnlyImage(t *testing.T) {
	j := newJob(t, jobSpec{Image: busyboxImage})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", runnerScript("echo shell=${BASH_VERSION:-none}\nls /bin/bash 2>/dev/null || echo no-bash\n"))
	if r.Code != 0 {
		t.Fatalf("run: %s", r)
	}
	if r.Stdout != "shell=none\nno-bash\n" {
		t.Errorf("stdout = %q", r.Stdout)
	}
}

// TestStageRouting: helper stages run in the helper image (Debian, with
// bash), the steps and any stage name the driver does not know run in the
// build image (busybox).
func TestStageRouting(t *testing.T) {
	j := newJob(t, jobSpec{Image: busyboxImage})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	probe := runnerScript("if [ -x /bin/bash ]; then echo helper; else echo build; fi\n")
	for stage, want := range map[string]string{
		"get_sources":        "helper",
		"restore_cache":      "helper",
		"build_script":       "build",
		"step_release":       "build",
		"after_script":       "build",
		"some_future_stage":  "build",
		"download_artifacts": "helper",
	} {
		r := j.run(stage, probe)
		if r.Code != 0 || r.Stdout != want+"\n" {
			t.Errorf("stage %s ran in %q (exit %d), want %s", stage, strings.TrimSpace(r.Stdout), r.Code, want)
		}
	}
}

// TestSharedBuildsVolume: what get_sources writes in the helper is what the
// build container sees under /builds.
func TestSharedBuildsVolume(t *testing.T) {
	j := newJob(t, jobSpec{Image: busyboxImage})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if r := j.run("get_sources", runnerScript("echo from-helper > shared.txt\n")); r.Code != 0 {
		t.Fatalf("get_sources: %s", r)
	}
	if r := j.run("build_script", runnerScript("cat shared.txt\n")); r.Code != 0 || r.Stdout != "from-helper\n" {
		t.Fatalf("build_script: %s", r)
	}
}

// TestImageEntrypoint: the image's entrypoint runs once when the build
// container starts, and what it exports reaches the stage scripts (they
// run under the stage agent it execs, as the Docker executor's run under
// its shell); the job's image:entrypoint [""] disables it.
func TestImageEntrypoint(t *testing.T) {
	probe := runnerScript("cat /tmp/entrypoint-marker 2>/dev/null || echo no-marker\necho export=${FROM_ENTRYPOINT:-unset}\n")
	for _, tc := range []struct {
		name       string
		entrypoint []string
		want       string
	}{
		{"image default", nil, "entrypoint-ran\nexport=yes\n"},
		{"job override clears it", []string{""}, "no-marker\nexport=unset\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t, jobSpec{Image: entrypointImage, Entrypoint: tc.entrypoint})
			if r := j.prepare(); r.Code != 0 {
				t.Fatalf("prepare: %s", r)
			}
			if r := j.run("build_script", probe); r.Code != 0 || r.Stdout != tc.want {
				t.Errorf("run: want %q, got %s", tc.want, r)
			}
		})
	}
}

// TestCleanupIdempotent: cleanup removes everything, and a second call
// (and a call with nothing ever prepared) succeeds.
func TestCleanupIdempotent(t *testing.T) {
	j := newJob(t, jobSpec{})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if left := jobResources(t, j); len(left) != 4 {
		t.Fatalf("after prepare the job has %v, want 2 containers, the builds volume and the credentials' tmpfs (its network is its slot's)", left)
	}
	for i := 0; i < 2; i++ {
		if r := j.cleanup(); r.Code != 0 {
			t.Fatalf("cleanup %d: %s", i+1, r)
		}
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
	fresh := newJob(t, jobSpec{})
	if r := fresh.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup without prepare: %s", r)
	}
}

// TestRunAfterContainerGone: a stage whose container vanished is a system
// failure, not a build failure.
func TestRunAfterContainerGone(t *testing.T) {
	j := newJob(t, jobSpec{})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	r := j.run("build_script", runnerScript("echo hi\n"))
	if r.Code != systemFailureCode || !strings.Contains(r.Stderr, "the build container of this job is gone or stopped") {
		t.Errorf("run after cleanup: %s", r)
	}
}

// TestBadConfigFile: every problem of a bad config is listed on one line,
// naming the keys; the config stage fails as a system failure with nothing
// on stdout.
func TestBadConfigFile(t *testing.T) {
	j := newJob(t, jobSpec{Config: `
[docker]
hots = "unix:///var/run/docker.sock"
pull_policy = ["sometimes"]
[log]
level = "loud"
`})
	r := j.call("config")
	if r.Code != systemFailureCode {
		t.Fatalf("config: want exit %d, got %s", systemFailureCode, r)
	}
	if r.Stdout != "" {
		t.Errorf("stdout must stay empty, got %q", r.Stdout)
	}
	want := "warmcache: config " + filepath.Join(j.Dir, "warmcache.toml") + `: unknown key docker.hots; docker.pull_policy[0]: "sometimes" is not one of always, if-not-present, never; log.level: "loud" is not one of debug, info, warn, error` + "\n"
	if r.Stderr != want {
		t.Errorf("stderr:\n got %q\nwant %q", r.Stderr, want)
	}
	if r := j.prepare(); r.Code != systemFailureCode {
		t.Errorf("prepare with a bad config: %s", r)
	}
	// Give the deferred cleanup a valid config again.
	if err := j.SetConfig(defaultConfig); err != nil {
		t.Fatal(err)
	}
}

// TestCleanupWithBrokenConfig: an admin who breaks the config while a job
// runs must not leak that job's containers: cleanup goes on with the
// built-in defaults and says why.
func TestCleanupWithBrokenConfig(t *testing.T) {
	j := newJob(t, jobSpec{})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if err := j.SetConfig("[docker]\npull_policy = 3\n"); err != nil {
		t.Fatal(err)
	}
	r := j.cleanup()
	if r.Code != 0 || !strings.HasPrefix(r.Stderr, "warmcache: config ") || !strings.HasSuffix(r.Stderr, "; cleaning up with the built-in defaults\n") {
		t.Errorf("cleanup with a broken config: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// TestMissingResponseFile: without a response file every stage but config
// fails as a system failure with one clear line.
func TestMissingResponseFile(t *testing.T) {
	j := newJob(t, jobSpec{})
	if err := os.Rename(filepath.Join(j.Dir, "response.json"), filepath.Join(j.Dir, "gone.json")); err != nil {
		t.Fatal(err)
	}
	r := j.prepare()
	if r.Code != systemFailureCode || strings.Count(r.Stderr, "\n") != 1 || !strings.Contains(r.Stderr, "reading job response") {
		t.Errorf("prepare without response file: %s", r)
	}
	if err := os.Rename(filepath.Join(j.Dir, "gone.json"), filepath.Join(j.Dir, "response.json")); err != nil {
		t.Fatal(err)
	}
}

// TestEntrypointThatDoesNotExec: an entrypoint that ignores its arguments
// stops the build container at once; the first step says so in one line,
// as a system failure.
func TestEntrypointThatDoesNotExec(t *testing.T) {
	j := newJob(t, jobSpec{Image: busyboxImage, Entrypoint: []string{"sh", "-c", "echo broken entrypoint"}})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	// Whichever moment the container dies at, the stage cannot finish first.
	r := j.run("build_script", runnerScript("sleep 2; echo hi\n"))
	if r.Code != systemFailureCode || strings.Count(r.Stderr, "\n") != 1 ||
		!strings.Contains(r.Stderr, "the build container of this job is gone or stopped (daemon restart, or an image entrypoint that does not exec its arguments)") {
		t.Errorf("build_script: want exit %d and one clear line, got %s", systemFailureCode, r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// TestStageAgent: every stage's shell is a child of the container's stage
// agent (no exec per stage), in the helper and in the build container;
// with docker.stage_agent = false it comes from an exec (no parent in the
// container), and the job works the same.
func TestStageAgent(t *testing.T) {
	probe := runnerScript("if [ -r /proc/$PPID/cmdline ]; then tr '\\0' ' ' < /proc/$PPID/cmdline; fi; echo \"<- parent of $$\"\n")
	for _, tc := range []struct {
		name, config, want string
	}{
		{"agent", defaultConfig, "/run/warmcache-agent agent <- parent"},
		{"exec", defaultConfig + "stage_agent = false\n", "<- parent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t, jobSpec{Image: busyboxImage, Config: tc.config})
			if r := j.prepare(); r.Code != 0 {
				t.Fatalf("prepare: %s", r)
			}
			for _, stage := range []string{"get_sources", "build_script", "after_script"} {
				r := j.run(stage, probe)
				if r.Code != 0 || !strings.HasPrefix(r.Stdout, tc.want) {
					t.Errorf("%s: want stdout starting %q, got %s", stage, tc.want, r)
				}
			}
		})
	}
}
