package e2e

// This file plays gitlab-runner's part exactly as ../shared/protocol.md
// describes: a fresh temp dir as working directory and TMPDIR holding
// response.json and scriptNNN/script files, the exit-code environment,
// CUSTOM_ENV_ variables with the very names a real runner 19.4 passed
// (testdata/runner-samples/env-*.txt), the driver in its own process group,
// and cleanup after every prepare, failed or not.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// Exit codes the runner hands the driver. Deliberately not 1 and 2, so a
// driver that hard-codes them fails the suite.
const (
	buildFailureCode  = 41
	systemFailureCode = 42
)

var jobCounter atomic.Int64

// nextJobID gives every job of the suite a unique id, also across
// concurrent runs of the suite on one engine.
func nextJobID() int64 {
	return int64(os.Getpid())*1000 + jobCounter.Add(1)
}

// jobSpec is what a test varies about a job.
type jobSpec struct {
	ProjectID  int64
	Image      string
	Entrypoint []string // nil: not set in the response
	PullPolicy []string
	Protected  bool
	Config     string            // warmcache TOML; "" uses the suite default
	Vars       map[string]string // extra job variables
}

// job is one job as the runner drives it.
type job struct {
	t       *testing.T
	dir     string // the runner's temp dir for this preparation attempt
	id      int64
	env     []string
	scripts int
}

// result is what one driver call produced.
type result struct {
	Code   int
	Stdout string
	Stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s\n--- stderr\n%s", r.Code, r.Stdout, r.Stderr)
}

// newJob writes the response file and builds the stage environment. It
// registers the cleanup stage to run when the test ends, as the runner
// always calls cleanup.
func newJob(t *testing.T, spec jobSpec) *job {
	t.Helper()
	j := &job{t: t, dir: t.TempDir(), id: nextJobID()}
	if spec.ProjectID == 0 {
		// A project of its own, so the job's caches are the test's alone.
		spec.ProjectID = j.id
	}
	if spec.Image == "" {
		spec.Image = debianImage
	}
	resp := sampleResponse(t)
	resp["id"] = j.id
	info := resp["job_info"].(map[string]any)
	info["project_id"] = spec.ProjectID
	git := resp["git_info"].(map[string]any)
	git["protected"] = spec.Protected
	img := map[string]any{"name": spec.Image}
	if spec.Entrypoint != nil {
		img["entrypoint"] = spec.Entrypoint
	}
	if spec.PullPolicy != nil {
		img["pull_policy"] = spec.PullPolicy
	}
	resp["image"] = img
	resp["services"] = []any{}
	vars := map[string]string{
		"CI_JOB_ID":               strconv.FormatInt(j.id, 10),
		"CI_PROJECT_ID":           strconv.FormatInt(spec.ProjectID, 10),
		"CI_COMMIT_REF_PROTECTED": strconv.FormatBool(spec.Protected),
		"CI_JOB_IMAGE":            spec.Image,
	}
	for k, v := range spec.Vars {
		vars[k] = v
	}
	resp["variables"] = withVariables(resp["variables"].([]any), vars)
	writeJSON(t, filepath.Join(j.dir, "response.json"), resp, 0o600)

	cfg := spec.Config
	if cfg == "" {
		cfg = defaultConfig
	}
	cfgPath := filepath.Join(j.dir, "warmcache.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	j.env = runnerEnv(t, j.dir, resp, cfgPath)
	t.Cleanup(func() {
		if r := j.call("cleanup"); r.Code != 0 {
			t.Errorf("cleanup at test end: %s", r)
		}
		removeProjectCaches(t, spec.ProjectID)
	})
	return j
}

// call runs the driver binary with args, the way the runner does.
func (j *job) call(args ...string) result {
	cmd := exec.Command(driverBin, args...)
	cmd.Dir = j.dir
	cmd.Env = j.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			j.t.Fatalf("starting driver: %v", err)
		}
		code = ee.ExitCode()
	}
	return result{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

func (j *job) prepare() result { return j.call("prepare") }
func (j *job) cleanup() result { return j.call("cleanup") }

// run writes a stage script as the runner does (scriptNNN/script, 0700)
// and calls the run stage with it.
func (j *job) run(stage, script string) result {
	j.scripts++
	dir := filepath.Join(j.dir, fmt.Sprintf("script%03d", j.scripts))
	if err := os.Mkdir(dir, 0o700); err != nil {
		j.t.Fatal(err)
	}
	path := filepath.Join(dir, "script")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		j.t.Fatal(err)
	}
	return j.call("run", path, stage)
}

// buildExitCode reads what the driver wrote to BUILD_EXIT_CODE_FILE.
func (j *job) buildExitCode() string {
	b, err := os.ReadFile(filepath.Join(j.dir, "build_exit_code"))
	if err != nil {
		return "missing: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}

// runnerScript wraps body in the shape of the runner's generated bash
// scripts (see testdata/runner-samples/script-*.sh): a TERM trap, errexit
// and pipefail, then one eval of an ANSI-C quoted body that exports the
// job's variables and changes into the project directory.
func runnerScript(body string) string {
	prelude := "export CI_PROJECT_DIR=/builds/group/project\n" +
		"mkdir -p \"/builds/group/project.tmp\" \"/builds/group/project\"\n" +
		"cd /builds/group/project\n"
	return "#!/usr/bin/env bash\n\ntrap 'exit 1' TERM\n\n" +
		"case \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\n" +
		"set +o noclobber\n" +
		"(trap 'exit 1' TERM; eval " + ansiQuote(prelude+body) + ") < /dev/null\nexit 0\n"
}

// ansiQuote quotes s as bash's $'...'.
func ansiQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\t", `\t`)
	return "$'" + r.Replace(s) + "'"
}

// sampleResponse loads the response file a real runner wrote.
func sampleResponse(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile("testdata/runner-samples/job_response.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// withVariables sets vars in the response's variable list, replacing
// values of existing keys and appending new ones.
func withVariables(list []any, vars map[string]string) []any {
	seen := map[string]bool{}
	for _, v := range list {
		m := v.(map[string]any)
		key := m["key"].(string)
		if val, ok := vars[key]; ok {
			m["value"] = val
			seen[key] = true
		}
	}
	for k, v := range vars {
		if !seen[k] {
			list = append(list, map[string]any{"key": k, "value": v, "public": true, "file": false, "masked": false, "raw": false})
		}
	}
	return list
}

func writeJSON(t *testing.T, path string, v any, mode os.FileMode) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// runnerEnv builds the environment of every driver call (protocol §4): the
// runner's own environment, TMPDIR, the exit codes, the two files, then a
// CUSTOM_ENV_ entry for exactly the names the real runner passed.
func runnerEnv(t *testing.T, dir string, resp map[string]any, cfgPath string) []string {
	t.Helper()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"LANG=C.UTF-8",
		"WARMCACHE_CONFIG=" + cfgPath,
		"TMPDIR=" + dir,
		"BUILD_FAILURE_EXIT_CODE=" + strconv.Itoa(buildFailureCode),
		"SYSTEM_FAILURE_EXIT_CODE=" + strconv.Itoa(systemFailureCode),
		"BUILD_EXIT_CODE_FILE=" + filepath.Join(dir, "build_exit_code"),
		"JOB_RESPONSE_FILE=" + filepath.Join(dir, "response.json"),
	}
	values := map[string]string{}
	for _, v := range resp["variables"].([]any) {
		m := v.(map[string]any)
		values[m["key"].(string)] = m["value"].(string)
	}
	// Variables the runner adds itself; values as a runner on slot 0 sets them.
	runnerAdded := map[string]string{
		"CI_BUILDS_DIR": "/builds", "CI_PROJECT_DIR": "/builds/group/project",
		"CI_CONCURRENT_ID": "0", "CI_CONCURRENT_PROJECT_ID": "0",
		"CI_JOB_SERVICES": "", "CI_JOB_STATUS": "running",
		"CI_RUNNER_EXECUTABLE_ARCH": "linux/amd64", "CI_RUNNER_REVISION": "d79f3e7b",
		"CI_RUNNER_SHORT_TOKEN": "e2etoken", "CI_RUNNER_VERSION": "19.4.0",
		"CI_SHARED_ENVIRONMENT": "true", "RUNNER_TEMP_PROJECT_DIR": "/builds/group/project.tmp",
	}
	for _, name := range sampleEnvNames(t, "env-prepare.txt") {
		key, ok := strings.CutPrefix(name, "CUSTOM_ENV_")
		if !ok {
			continue
		}
		val, found := values[key]
		if !found {
			val, found = runnerAdded[key]
		}
		if !found && strings.HasPrefix(key, "FF_") {
			val, found = "false", true
		}
		if !found {
			t.Fatalf("harness does not know a value for %s", name)
		}
		env = append(env, name+"="+val)
	}
	// Job variables beyond the sample's (a test's own) are passed too.
	for k, v := range values {
		if !slicesContains(env, "CUSTOM_ENV_"+k+"=") {
			env = append(env, "CUSTOM_ENV_"+k+"="+v)
		}
	}
	return env
}

func slicesContains(env []string, prefix string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

func sampleEnvNames(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata/runner-samples", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			names = append(names, s)
		}
	}
	return names
}
