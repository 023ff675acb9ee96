package job

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/warmcache/warmcache/internal/naming"
)

// fixture is the job response a real gitlab-runner 19.4 wrote for the
// sample job (copied from the runner samples).
const fixture = "testdata/job_response.json"

func readFixture(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseRunnerSample(t *testing.T) {
	j, err := Parse(readFixture(t))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	const token = "glcbt-NGMyZWMyNmI1ODdmODJk"
	want := Job{
		ID:          22961,
		Token:       token,
		ProjectID:   1001,
		ProjectPath: "group/project",
		PipelineID:  1461,
		Protected:   false,
		RepoURL:     "http://gitlab-ci-token:" + token + "@127.0.0.1:42891/group/project.git",
		ServerHost:  "127.0.0.1",
		Image:       Image{Name: "golang:1.26", Entrypoint: []string{""}},
		Services: []Image{
			{Name: "postgres:16", Alias: "db", Variables: []Variable{{Key: "POSTGRES_PASSWORD", Value: "pw", Public: true}}},
			{Name: "redis:7"},
		},
		Credentials: []Credential{},
		Steps: []Step{
			{Name: "script", Script: []string{"echo before_script", "echo CI_JOB_SERVICES=$CI_JOB_SERVICES", "cat dist/prev.txt",
				"mkdir -p out vendor && echo built > out/result.txt && date > vendor/cached.txt", "ls -la"}},
			{Name: "after_script", Script: []string{"echo after_script: $CI_JOB_STATUS"}},
		},
		Timeout: 3600, AllowGitFetch: true,
	}
	vars := j.Variables
	j.Variables = nil
	if !reflect.DeepEqual(j, want) {
		t.Errorf("Parse =\n%#v\nwant\n%#v", j, want)
	}

	if len(vars) != 55 {
		t.Errorf("%d variables, want 55", len(vars))
	}
	for _, v := range []Variable{
		{Key: "CI_PIPELINE_ID", Value: "1461", Public: true},
		{Key: "CI_JOB_TOKEN", Value: token, Masked: true},
		{Key: "CI_COMMIT_REF_PROTECTED", Value: "false", Public: true},
		{Key: "MY_VAR", Value: "my-value", Public: true},
		{Key: "SECRET_TOKEN", Value: "s3cr3t-value-123", Masked: true},
	} {
		if !slices.Contains(vars, v) {
			t.Errorf("variables lack %+v", v)
		}
	}

	j.Variables = vars
	secrets := j.Secrets()
	for _, s := range []string{token, "s3cr3t-value-123"} {
		if !slices.Contains(secrets, s) {
			t.Errorf("Secrets() = %q lacks %q", secrets, s)
		}
	}
	for _, v := range vars {
		if !v.Masked && v.Value != "" && slices.Contains(secrets, v.Value) {
			t.Errorf("Secrets() contains the unmasked value of %s: %q", v.Key, v.Value)
		}
	}
}

func TestSecrets(t *testing.T) {
	j := Job{
		Token: "tok",
		Variables: []Variable{
			{Key: "A", Value: "public"},
			{Key: "B", Value: "masked", Masked: true},
			{Key: "C", Value: "  ", Masked: true}, // blank: masking it would mask every space
			{Key: "D", Value: "file-secret", Masked: true, File: true},
		},
		Credentials: []Credential{{Type: "registry", URL: "r.example.com", Username: "u", Password: "pw"}, {Password: ""}},
	}
	want := []string{"tok", "masked", "file-secret", "pw"}
	if got := j.Secrets(); !slices.Equal(got, want) {
		t.Errorf("Secrets() = %q, want %q", got, want)
	}
	if got := (Job{}).Secrets(); len(got) != 0 {
		t.Errorf("Secrets() of an empty job = %q", got)
	}
}

func TestProtected(t *testing.T) {
	tests := []struct {
		name, gitInfo, variable string
		want                    bool
	}{
		{"true", `{"protected":true}`, "false", true},
		{"false wins over the variable", `{"protected":false}`, "true", false},
		{"null falls back to the variable", `{"protected":null}`, "true", true},
		{"null and variable false", `{"protected":null}`, "false", false},
		{"absent falls back to the variable", `{}`, "true", true},
		{"null without the variable", `{"protected":null}`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := `[]`
			if tt.variable != "" {
				vars = `[{"key":"CI_COMMIT_REF_PROTECTED","value":"` + tt.variable + `"}]`
			}
			data := `{"id":1,"job_info":{"project_id":2},"git_info":` + tt.gitInfo + `,"variables":` + vars + `}`
			j, err := Parse([]byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if j.Protected != tt.want {
				t.Errorf("Protected = %v, want %v", j.Protected, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	sample := readFixture(t)
	tests := []struct {
		name, data, want string
	}{
		{"empty object", `{}`, "missing or invalid job id"},
		{"null", `null`, "missing or invalid job id"},
		{"zero id", `{"id":0,"job_info":{"project_id":2}}`, "missing or invalid job id"},
		{"negative id", `{"id":-5,"job_info":{"project_id":2}}`, "missing or invalid job id"},
		{"missing project", `{"id":1}`, "missing or invalid job_info.project_id"},
		{"zero project", `{"id":1,"job_info":{"project_id":0}}`, "missing or invalid job_info.project_id"},
		{"empty input", ``, "not valid JSON: unexpected end of JSON input"},
		{"not JSON", `id=1`, "not valid JSON: invalid character 'i' looking for beginning of value"},
		{"truncated sample", string(sample[:len(sample)/2]), "not valid JSON: unexpected end of JSON input"},
		{"trailing data", `{"id":1,"job_info":{"project_id":2}} {}`, "not valid JSON: invalid character '{' after top-level value"},
		{"array", `[]`, "not valid JSON: json: cannot unmarshal array into Go value of type job.response"},
		{"id as string", `{"id":"22961"}`, "not valid JSON: json: cannot unmarshal string into Go struct field response.id of type int64"},
		{"protected as string", `{"id":1,"job_info":{"project_id":2},"git_info":{"protected":"yes"}}`,
			"not valid JSON: json: cannot unmarshal string into Go struct field .git_info.protected of type bool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Parse([]byte(tt.data))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if !reflect.DeepEqual(j, Job{}) {
				t.Errorf("Parse returned a job with its error: %+v", j)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	e := map[string]string{
		"JOB_RESPONSE_FILE":                   fixture,
		"CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN":    "t3st",
		"CUSTOM_ENV_CI_RUNNER_ID":             "12",
		"CUSTOM_ENV_CI_RUNNER_VERSION":        "19.4.0",
		"CUSTOM_ENV_CI_CONCURRENT_ID":         "2",
		"CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID": "1",
		// A job can set these; the response file wins for what matters.
		"CUSTOM_ENV_CI_PROJECT_ID": "666",
		"CUSTOM_ENV_CI_JOB_ID":     "666",
	}
	j, err := Load(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != 22961 || j.ProjectID != 1001 {
		t.Errorf("ID %d, ProjectID %d: not from the response file", j.ID, j.ProjectID)
	}
	if j.RunnerShortToken != "t3st" || j.RunnerID != "12" || j.RunnerVersion != "19.4.0" || j.ConcurrentID != 2 {
		t.Errorf("runner fields = %q %q %q %d", j.RunnerShortToken, j.RunnerID, j.RunnerVersion, j.ConcurrentID)
	}
	if j.ConcurrentProjectID != 1 {
		t.Errorf("ConcurrentProjectID = %d, want 1", j.ConcurrentProjectID)
	}
	want := naming.JobKey{Runner: "t3st", Instance: "127.0.0.1:42891", ProjectID: 1001, Slot: 2, JobID: 22961}
	if j.Key() != want {
		t.Errorf("Key() = %+v, want %+v", j.Key(), want)
	}
}

func TestLoadProjectDir(t *testing.T) {
	for value, want := range map[string]string{
		"/builds/group/project": "/builds/group/project", "/builds/a/b/c": "/builds/a/b/c",
		"": "", "/builds": "", "/builds/": "", "/buildsx/a": "", "/tmp/a": "", "builds/a": "",
		"/builds/../etc": "", "/builds/a/../../etc": "", "/builds/a//b": "", "/builds/a/": "", "/builds/./a": "",
	} {
		j, err := Load(env(map[string]string{"JOB_RESPONSE_FILE": fixture, "CUSTOM_ENV_CI_PROJECT_DIR": value}))
		if err != nil {
			t.Fatal(err)
		}
		if j.ProjectDir != want {
			t.Errorf("CI_PROJECT_DIR %q: ProjectDir %q, want %q", value, j.ProjectDir, want)
		}
	}
}

func TestLoadConcurrentID(t *testing.T) {
	for value, want := range map[string]int{
		"": 0, "0": 0, "3": 3, "1048575": 1048575,
		"1048576": 0, "-1": 0, "x": 0, " 3": 0, "99999999999999999999": 0,
	} {
		j, err := Load(env(map[string]string{"JOB_RESPONSE_FILE": fixture, "CUSTOM_ENV_CI_CONCURRENT_ID": value}))
		if err != nil {
			t.Fatal(err)
		}
		if j.ConcurrentID != want {
			t.Errorf("CI_CONCURRENT_ID %q gives %d, want %d", value, j.ConcurrentID, want)
		}
	}
}

// TestGitStrategy: GIT_STRATEGY when the runner knows it, else the
// project's default from allow_git_fetch, as the runner decides.
func TestGitStrategy(t *testing.T) {
	for _, tt := range []struct {
		value      string
		set, fetch bool
		want       string
	}{
		{"", false, true, GitFetch},
		{"", false, false, GitClone},
		{"clone", true, true, GitClone},
		{"fetch", true, false, GitFetch},
		{"none", true, true, GitNone},
		{"empty", true, true, GitEmpty},
		{"FETCH", true, false, GitClone},
		{"", true, true, GitFetch},
	} {
		j := Job{AllowGitFetch: tt.fetch}
		if tt.set {
			j.Variables = []Variable{{Key: "GIT_STRATEGY", Value: tt.value}}
		}
		if got := j.GitStrategy(); got != tt.want {
			t.Errorf("GIT_STRATEGY %q (set %v), allow_git_fetch %v: %q, want %q", tt.value, tt.set, tt.fetch, got, tt.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	invalid := filepath.Join(dir, "invalid.json")
	if err := os.WriteFile(invalid, []byte(`{"id":1,`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Sparse files of zeros: one at the limit, one a byte over it.
	atLimit := sparseFile(t, dir, "limit.json", maxResponseBytes)
	huge := sparseFile(t, dir, "huge.json", maxResponseBytes+1)

	tests := []struct {
		name, path, want string
	}{
		{"unset", "", "JOB_RESPONSE_FILE is not set: warmcache stages must be started by gitlab-runner's custom executor"},
		{"missing", missing, "reading job response: open " + missing + ": no such file or directory"},
		{"directory", dir, "reading job response: read " + dir + ": is a directory"},
		{"invalid", invalid, "job response " + invalid + ": not valid JSON: unexpected end of JSON input"},
		{"at the limit: read, then parsed", atLimit, "job response " + atLimit + ": not valid JSON: invalid character '\\x00' looking for beginning of value"},
		{"oversized", huge, "job response " + huge + " is larger than 64 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(env(map[string]string{"JOB_RESPONSE_FILE": tt.path}))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestVariable(t *testing.T) {
	j := Job{Variables: []Variable{{Key: "A", Value: "1"}, {Key: "A", Value: "2"}, {Key: "B", Value: ""}}}
	for key, want := range map[string]string{"A": "1", "B": "", "C": ""} {
		if got := j.Variable(key); got != want {
			t.Errorf("Variable(%q) = %q, want %q", key, got, want)
		}
	}
}

func sparseFile(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Truncate(size), f.Close()); err != nil {
		t.Fatal(err)
	}
	return path
}
