// Package job reads what gitlab-runner hands the driver about a job: the
// trusted job response (JOB_RESPONSE_FILE) and the CUSTOM_ENV_ variables.
//
// Anything that isolates one project or ref from another comes from the
// response file, which the job cannot change; CUSTOM_ENV_ values can be
// overridden by the job's YAML and are only used for convenience.
package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// maxResponseBytes bounds the response file we are willing to parse.
const maxResponseBytes = 64 << 20

// Job is the part of the job payload the driver uses.
type Job struct {
	ID          int64
	Token       string // secret: the job token
	ProjectID   int64
	ProjectPath string
	PipelineID  int64
	Protected   bool
	RepoURL     string // may embed the job token
	ServerHost  string
	Image       Image
	// Services come from the response; only a response without any
	// (not even an empty list) falls back to CUSTOM_ENV_CI_JOB_SERVICES.
	Services    []Image
	Credentials []Credential
	Variables   []Variable
	Steps       []Step
	Timeout     int // seconds
	// AllowGitFetch is the project's default git strategy: fetch when
	// true, else clone (GIT_STRATEGY overrides it).
	AllowGitFetch bool

	// From the runner's CUSTOM_ENV_ variables, for readable names only.
	RunnerShortToken string
	RunnerID         string
	ConcurrentID     int
	// ConcurrentProjectID is the slot among the project's running jobs.
	ConcurrentProjectID int
	RunnerVersion       string
	// ProjectDir is CI_PROJECT_DIR, where get_sources checks the project
	// out; "" unless it is a clean path below builds_dir.
	ProjectDir string

	// ServicesEnvError is set when the CUSTOM_ENV_CI_JOB_SERVICES fallback
	// is not valid JSON: prepare fails with it, cleanup does not care.
	ServicesEnvError error
}

// Image is a job or service image as the job response gives it.
type Image struct {
	Name       string     `json:"name"`
	Alias      string     `json:"alias"`
	Entrypoint []string   `json:"entrypoint"`
	Command    []string   `json:"command"`
	PullPolicy []string   `json:"pull_policy"`
	Variables  []Variable `json:"variables"`
	// Ports are a service's `ports:`, the ports it listens on.
	Ports []Port `json:"ports"`
	// ExecutorOpts carries image:docker:user and platform.
	ExecutorOpts struct {
		Docker struct {
			User     string `json:"user"`
			Platform string `json:"platform"`
		} `json:"docker"`
	} `json:"executor_opts"`
}

// Port is one of a service's `ports:`: GitLab's protocol is "http" or
// "https" (both TCP), or empty.
type Port struct {
	Number   int    `json:"number"`
	Protocol string `json:"protocol"`
	Name     string `json:"name"`
}

// Step is one step of the job: "script", "after_script" or a named one.
type Step struct {
	Name   string   `json:"name"`
	Script []string `json:"script"`
}

// Credential is a registry login the job response carries.
type Credential struct {
	Type     string `json:"type"`
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// Variable is a job variable.
type Variable struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Masked bool   `json:"masked"`
	File   bool   `json:"file"`
	// Public is false for the project's and group's own CI/CD variables
	// (and the job token): they stay out of service containers.
	Public bool `json:"public"`
	// Raw values are never expanded.
	Raw bool `json:"raw"`
}

type response struct {
	ID            int64  `json:"id"`
	Token         string `json:"token"`
	AllowGitFetch bool   `json:"allow_git_fetch"`
	JobInfo       struct {
		ProjectID       int64  `json:"project_id"`
		ProjectFullPath string `json:"project_full_path"`
		PipelineID      int64  `json:"pipeline_id"`
	} `json:"job_info"`
	GitInfo struct {
		RepoURL   string `json:"repo_url"`
		Protected *bool  `json:"protected"`
	} `json:"git_info"`
	RunnerInfo struct {
		Timeout int `json:"timeout"`
	} `json:"runner_info"`
	Variables   []Variable   `json:"variables"`
	Image       Image        `json:"image"`
	Services    []Image      `json:"services"`
	Credentials []Credential `json:"credentials"`
	Steps       []Step       `json:"steps"`
}

// Load reads the job from the environment gitlab-runner gives every stage.
func Load(getenv func(string) string) (Job, error) {
	path := getenv(protocol.EnvJobResponseFile)
	if path == "" {
		return Job{}, errors.New(protocol.EnvJobResponseFile + " is not set: warmcache stages must be started by gitlab-runner's custom executor")
	}
	data, err := readBounded(path)
	if err != nil {
		return Job{}, err
	}
	j, err := Parse(data)
	if err != nil {
		return Job{}, fmt.Errorf("job response %s: %w", path, err)
	}
	if j.Services == nil {
		j.Services, j.ServicesEnvError = servicesFromEnv(getenv(protocol.EnvJobServices))
	}
	j.RunnerShortToken = getenv(protocol.EnvRunnerShortToken)
	j.RunnerID = getenv(protocol.EnvRunnerID)
	j.RunnerVersion = getenv(protocol.EnvRunnerVersion)
	if n, err := strconv.Atoi(getenv(protocol.EnvConcurrentID)); err == nil && n >= 0 && n < 1<<20 {
		j.ConcurrentID = n
	}
	if n, err := strconv.Atoi(getenv(protocol.EnvConcurrentProjectID)); err == nil && n >= 0 && n < 1<<20 {
		j.ConcurrentProjectID = n
	}
	j.ProjectDir = projectDir(getenv(protocol.EnvProjectDir))
	return j, nil
}

// projectDir is dir if it is a clean absolute path strictly below
// builds_dir, else "": the job may set it (GIT_CLONE_PATH), and the
// driver writes there.
func projectDir(dir string) string {
	rel, ok := strings.CutPrefix(dir, protocol.BuildsDir+"/")
	if !ok || rel == "" || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
		return ""
	}
	return dir
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading job response: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading job response: %w", err)
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("job response %s is larger than %d MiB", path, maxResponseBytes>>20)
	}
	return data, nil
}

// Parse decodes and checks a job response.
func Parse(data []byte) (Job, error) {
	var r response
	if err := json.Unmarshal(data, &r); err != nil {
		return Job{}, fmt.Errorf("not valid JSON: %w", err)
	}
	if r.ID <= 0 {
		return Job{}, errors.New("missing or invalid job id")
	}
	if r.JobInfo.ProjectID <= 0 {
		return Job{}, errors.New("missing or invalid job_info.project_id")
	}
	j := Job{
		ID:          r.ID,
		Token:       r.Token,
		ProjectID:   r.JobInfo.ProjectID,
		ProjectPath: r.JobInfo.ProjectFullPath,
		PipelineID:  r.JobInfo.PipelineID,
		RepoURL:     r.GitInfo.RepoURL,
		Image:       r.Image,
		Services:    r.Services,
		Credentials: r.Credentials,
		Variables:   r.Variables,
		Steps:       r.Steps,
		Timeout:     r.RunnerInfo.Timeout,

		AllowGitFetch: r.AllowGitFetch,
	}
	j.ServerHost = j.Variable("CI_SERVER_HOST")
	// Older GitLab sends protected as null; only then fall back to the
	// variable GitLab itself put in the payload.
	if r.GitInfo.Protected != nil {
		j.Protected = *r.GitInfo.Protected
	} else {
		j.Protected = j.Variable("CI_COMMIT_REF_PROTECTED") == "true"
	}
	return j, nil
}

// Variable returns the value of the job variable key, or "".
func (j Job) Variable(key string) string {
	for _, v := range j.Variables {
		if v.Key == key {
			return v.Value
		}
	}
	return ""
}

// Git strategies (GIT_STRATEGY), as the runner names them.
const (
	GitClone = "clone"
	GitFetch = "fetch"
	GitNone  = "none"
	GitEmpty = "empty"
)

// GitStrategy is how the runner's get_sources will get the job's sources:
// GIT_STRATEGY when it is one the runner knows, else the project's default
// (fetch when the response allows it, else clone), as the runner decides.
func (j Job) GitStrategy() string {
	switch s := j.Variable("GIT_STRATEGY"); s {
	case GitClone, GitFetch, GitNone, GitEmpty:
		return s
	}
	if j.AllowGitFetch {
		return GitFetch
	}
	return GitClone
}

// Key identifies the job's resources.
func (j Job) Key() naming.JobKey {
	return naming.JobKey{Runner: j.RunnerShortToken, Instance: j.Instance(), ProjectID: j.ProjectID, Slot: j.ConcurrentID, JobID: j.ID}
}

// Meta is what the labels of the job's resources say of it besides its
// key, for resources made at now.
func (j Job) Meta(now time.Time) naming.JobMeta {
	return naming.JobMeta{PipelineID: j.PipelineID, RunnerID: j.RunnerID, TimeoutSeconds: j.Timeout, Created: now}
}

// Instance is the GitLab host[:port] from the repository URL (without its
// credentials), else CI_SERVER_HOST of the job response.
func (j Job) Instance() string {
	if u, err := url.Parse(j.RepoURL); err == nil && u.Host != "" {
		return strings.ToLower(u.Host)
	}
	return strings.ToLower(j.ServerHost)
}

// Secrets lists the secret values of the payload that must never reach a
// log: the job token, masked variables and registry passwords.
func (j Job) Secrets() []string {
	var s []string
	add := func(v string) {
		if strings.TrimSpace(v) != "" {
			s = append(s, v)
		}
	}
	add(j.Token)
	for _, v := range j.Variables {
		if v.Masked {
			add(v.Value)
		}
	}
	for _, c := range j.Credentials {
		add(c.Password)
	}
	return s
}
