// Package runnersim plays gitlab-runner's part towards a custom-executor
// driver exactly as docs/protocol.md describes: a fresh temp dir as
// working directory and TMPDIR holding response.json and scriptNNN/script
// files, the exit-code environment, CUSTOM_ENV_ variables with the very
// names a real runner 19.4 passed (samples/env-*.txt), the driver in its own
// process group. The end-to-end suite, the demo and the benchmarks use it.
package runnersim

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Samples holds what a real gitlab-runner 19.4 handed a driver: the job
// response, each stage's script and the environment names of each call.
//
//go:embed samples
var Samples embed.FS

// Exit codes this runner hands the driver. Deliberately not 1 and 2, so a
// driver that hard-codes them is caught.
const (
	BuildFailureCode  = 41
	SystemFailureCode = 42
)

// Spec is what varies between jobs.
type Spec struct {
	JobID      int64
	ProjectID  int64
	Image      string
	Entrypoint []string // nil: not set in the response
	PullPolicy []string
	Protected  bool
	User       string // image:docker:user
	Slot       int
	Config     string            // warmcache TOML
	Vars       map[string]string // job variables (as if set in the YAML)
	Services   []Service         // the job's `services:`
}

// RunnerID is the runner's id (CI_RUNNER_ID, as GitLab sets it), one per
// process: two test processes on one engine are two runners, and their
// jobs of one slot never share the slot's network.
var RunnerID = strconv.Itoa(1_000_000 + os.Getpid())

// Service is one entry of the job's `services:`.
type Service struct {
	Name       string
	Alias      string // may list several, separated by commas
	Entrypoint []string
	Command    []string
	Variables  map[string]string
}

// Job is one job as the runner drives it.
type Job struct {
	Dir     string // the runner's temp dir for this preparation attempt
	ID      int64
	driver  string
	env     []string
	exports string // the job variables as the runner's scripts export them
	scripts int
}

// Result is what one driver call produced.
type Result struct {
	Code   int
	Stdout string
	Stderr string
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s\n--- stderr\n%s", r.Code, r.Stdout, r.Stderr)
}

// NewJob writes the response file and config into dir and builds the
// environment of every driver call.
func NewJob(driver, dir string, spec Spec) (*Job, error) {
	// Calls run in dir, so a relative driver path would not resolve.
	driver, err := filepath.Abs(driver)
	if err != nil {
		return nil, err
	}
	j := &Job{Dir: dir, ID: spec.JobID, driver: driver}
	resp, err := SampleResponse()
	if err != nil {
		return nil, err
	}
	resp["id"] = spec.JobID
	resp["job_info"].(map[string]any)["project_id"] = spec.ProjectID
	resp["git_info"].(map[string]any)["protected"] = spec.Protected
	img := map[string]any{"name": spec.Image}
	if spec.Entrypoint != nil {
		img["entrypoint"] = spec.Entrypoint
	}
	if spec.PullPolicy != nil {
		img["pull_policy"] = spec.PullPolicy
	}
	if spec.User != "" {
		img["executor_opts"] = map[string]any{"docker": map[string]any{"user": spec.User}}
	}
	resp["image"] = img
	services := []any{}
	for _, s := range spec.Services {
		services = append(services, serviceJSON(s))
	}
	resp["services"] = services
	vars := map[string]string{
		"CI_JOB_ID":               strconv.FormatInt(spec.JobID, 10),
		"CI_PROJECT_ID":           strconv.FormatInt(spec.ProjectID, 10),
		"CI_COMMIT_REF_PROTECTED": strconv.FormatBool(spec.Protected),
		"CI_JOB_IMAGE":            spec.Image,
		"CI_RUNNER_ID":            RunnerID,
	}
	for k, v := range spec.Vars {
		vars[k] = v
	}
	resp["variables"] = withVariables(resp["variables"].([]any), vars)
	for _, v := range resp["variables"].([]any) {
		m := v.(map[string]any)
		j.exports += "export " + m["key"].(string) + "=" + ansiQuote(m["value"].(string)) + "\n"
	}
	data, err := json.Marshal(resp)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "response.json"), data, 0o600); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "warmcache.toml")
	if err := os.WriteFile(cfgPath, []byte(spec.Config), 0o600); err != nil {
		return nil, err
	}
	jobServices := ""
	if len(services) > 0 {
		b, err := json.Marshal(services)
		if err != nil {
			return nil, err
		}
		jobServices = string(b)
	}
	j.env, err = runnerEnv(dir, resp, cfgPath, spec.Slot, jobServices)
	return j, err
}

// serviceJSON is a service as both the response's services[] and
// CI_JOB_SERVICES carry it.
func serviceJSON(s Service) map[string]any {
	m := map[string]any{"name": s.Name}
	if s.Alias != "" {
		m["alias"] = s.Alias
	}
	if s.Entrypoint != nil {
		m["entrypoint"] = s.Entrypoint
	}
	if s.Command != nil {
		m["command"] = s.Command
	}
	if len(s.Variables) > 0 {
		m["variables"] = withVariables(nil, s.Variables)
	}
	return m
}

// SetConfig replaces the job's warmcache TOML.
func (j *Job) SetConfig(toml string) error {
	return os.WriteFile(filepath.Join(j.Dir, "warmcache.toml"), []byte(toml), 0o600)
}

// Call runs the driver with args, the way the runner does.
func (j *Job) Call(args ...string) (Result, error) {
	cmd := j.Command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return Result{}, fmt.Errorf("starting driver: %w", err)
		}
		code = ee.ExitCode()
	}
	return Result{Code: code, Stdout: out.String(), Stderr: errb.String()}, nil
}

// Command prepares a driver call without running it, for callers that
// need the process (signals, timing).
func (j *Job) Command(args ...string) *exec.Cmd {
	cmd := exec.Command(j.driver, args...)
	cmd.Dir = j.Dir
	cmd.Env = j.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// WriteScript stores a stage script as the runner does
// (scriptNNN/script, mode 0700) and returns its path.
func (j *Job) WriteScript(script string) (string, error) {
	j.scripts++
	dir := filepath.Join(j.Dir, fmt.Sprintf("script%03d", j.scripts))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "script")
	return path, os.WriteFile(path, []byte(script), 0o700)
}

// Run calls the run stage with script for stage.
func (j *Job) Run(stage, script string) (Result, error) {
	path, err := j.WriteScript(script)
	if err != nil {
		return Result{}, err
	}
	return j.Call("run", path, stage)
}

// BuildExitCode reads what the driver wrote to BUILD_EXIT_CODE_FILE.
func (j *Job) BuildExitCode() string {
	b, err := os.ReadFile(filepath.Join(j.Dir, "build_exit_code"))
	if err != nil {
		return "missing: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}

// Script wraps body in the shape of the runner's generated bash scripts
// (see samples/script-*.sh): a TERM trap, errexit and pipefail, then one
// eval of an ANSI-C quoted body that exports the job's variables and enters
// the project directory.
func (j *Job) Script(body string) string {
	return Script(j.exports + body)
}

// Script is Job.Script without the job's variables.
func Script(body string) string {
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

// SampleResponse loads the response file a real runner wrote.
func SampleResponse() (map[string]any, error) {
	data, err := Samples.ReadFile("samples/job_response.json")
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(data, &m)
}

// SampleScript returns the real runner's script for stage.
func SampleScript(stage string) (string, error) {
	b, err := Samples.ReadFile("samples/script-" + stage + ".sh")
	return string(b), err
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

// runnerEnv builds the environment of every driver call (docs/protocol.md): the
// runner's own environment, TMPDIR, the exit codes, the two files, then a
// CUSTOM_ENV_ entry for exactly the names the real runner passed, plus the
// job's own extra variables.
func runnerEnv(dir string, resp map[string]any, cfgPath string, slot int, jobServices string) ([]string, error) {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"LANG=C.UTF-8",
		"WARMCACHE_CONFIG=" + cfgPath,
		"TMPDIR=" + dir,
		"BUILD_FAILURE_EXIT_CODE=" + strconv.Itoa(BuildFailureCode),
		"SYSTEM_FAILURE_EXIT_CODE=" + strconv.Itoa(SystemFailureCode),
		"BUILD_EXIT_CODE_FILE=" + filepath.Join(dir, "build_exit_code"),
		"JOB_RESPONSE_FILE=" + filepath.Join(dir, "response.json"),
	}
	values := map[string]string{}
	for _, v := range resp["variables"].([]any) {
		m := v.(map[string]any)
		values[m["key"].(string)] = m["value"].(string)
	}
	// Variables the runner adds itself.
	runnerAdded := map[string]string{
		"CI_BUILDS_DIR": "/builds", "CI_PROJECT_DIR": "/builds/group/project",
		"CI_CONCURRENT_ID": strconv.Itoa(slot), "CI_CONCURRENT_PROJECT_ID": strconv.Itoa(slot),
		"CI_JOB_SERVICES": jobServices, "CI_JOB_STATUS": "running",
		"CI_RUNNER_EXECUTABLE_ARCH": "linux/amd64", "CI_RUNNER_REVISION": "d79f3e7b",
		"CI_RUNNER_SHORT_TOKEN": "e2etoken", "CI_RUNNER_VERSION": "19.4.0",
		"CI_SHARED_ENVIRONMENT": "true", "RUNNER_TEMP_PROJECT_DIR": "/builds/group/project.tmp",
	}
	names, err := Samples.ReadFile("samples/env-prepare.txt")
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, name := range strings.Fields(string(names)) {
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
			return nil, fmt.Errorf("runnersim has no value for %s", name)
		}
		env = append(env, name+"="+val)
		set[key] = true
	}
	for k, v := range values {
		if !set[k] {
			env = append(env, "CUSTOM_ENV_"+k+"="+v)
		}
	}
	return env, nil
}
