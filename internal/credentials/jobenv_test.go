package credentials

import (
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/job"
)

const jobToken = "glcbt-job-token-1234"

// sampleJob is a job of https://gitlab.example.com with a job token.
func sampleJob(vars ...string) job.Job {
	j := job.Job{
		Token:   jobToken,
		RepoURL: "https://gitlab-ci-token:" + jobToken + "@gitlab.example.com/group/project.git",
		Variables: []job.Variable{
			{Key: "CI_SERVER_URL", Value: "https://gitlab.example.com"},
			{Key: "CI_JOB_TOKEN", Value: jobToken, Masked: true},
		},
	}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		j.Variables = append(j.Variables, job.Variable{Key: k, Value: v})
	}
	return j
}

// tokenFiles is a fake file system of token files.
func tokenFiles(files map[string]string) func(string) ([]byte, error) {
	return func(path string) ([]byte, error) {
		if s, ok := files[path]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
}

const gitHelperEnv = `GIT_CONFIG_VALUE_0=!f() { if [ "$1" = get ]; then git credential-store --file=/run/warmcache/git-credentials get; fi; }; f`

func TestBuildEnv(t *testing.T) {
	proxies := config.Env{HTTPProxy: "http://proxy.example:3128", HTTPSProxy: "http://proxy.example:3128", NoProxy: "internal.example, .corp.example"}
	tests := []struct {
		name string
		cfg  config.Env
		job  job.Job
		want []string
	}{
		{"nothing configured, job token off", config.Env{}, sampleJob(), nil},
		{"job token: netrc, git helper, GOPRIVATE of the job's host", config.Env{JobToken: true}, sampleJob(), []string{
			"GOPRIVATE=gitlab.example.com", "NETRC=/run/warmcache/netrc",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=credential.helper", gitHelperEnv,
		}},
		{"job token, host already private", config.Env{JobToken: true, GoPrivate: "*.example.com"}, sampleJob(), []string{
			"GOPRIVATE=*.example.com", "NETRC=/run/warmcache/netrc",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=credential.helper", gitHelperEnv,
		}},
		{"job token, host private with the go command's trailing slash", config.Env{JobToken: true, GoPrivate: "gitlab.example.com/"}, sampleJob(), []string{
			"GOPRIVATE=gitlab.example.com/", "NETRC=/run/warmcache/netrc",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=credential.helper", gitHelperEnv,
		}},
		{"job token, only a group of the host private", config.Env{JobToken: true, GoPrivate: "gitlab.example.com/group"}, sampleJob(), []string{
			"GOPRIVATE=gitlab.example.com/group,gitlab.example.com", "NETRC=/run/warmcache/netrc",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=credential.helper", gitHelperEnv,
		}},
		{"proxies in both cases, npm and git; NO_PROXY extended", proxies, sampleJob(), []string{
			"http_proxy=http://proxy.example:3128", "HTTP_PROXY=http://proxy.example:3128", "npm_config_proxy=http://proxy.example:3128",
			"https_proxy=http://proxy.example:3128", "HTTPS_PROXY=http://proxy.example:3128", "npm_config_https_proxy=http://proxy.example:3128",
			"no_proxy=internal.example,.corp.example,localhost,127.0.0.1,::1",
			"NO_PROXY=internal.example,.corp.example,localhost,127.0.0.1,::1",
			"npm_config_noproxy=internal.example,.corp.example,localhost,127.0.0.1,::1",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.proxy", "GIT_CONFIG_VALUE_0=http://proxy.example:3128",
		}},
		{"different http and https proxies: git follows the variables", config.Env{HTTPProxy: "http://a.example:1", HTTPSProxy: "http://b.example:2"}, sampleJob(), []string{
			"http_proxy=http://a.example:1", "HTTP_PROXY=http://a.example:1", "npm_config_proxy=http://a.example:1",
			"https_proxy=http://b.example:2", "HTTPS_PROXY=http://b.example:2", "npm_config_https_proxy=http://b.example:2",
			"no_proxy=localhost,127.0.0.1,::1", "NO_PROXY=localhost,127.0.0.1,::1", "npm_config_noproxy=localhost,127.0.0.1,::1",
		}},
		{"a YAML HTTP_PROXY drops every spelling of ours and git's", proxies, sampleJob("HTTP_PROXY=http://mine.example:8080"), []string{
			"https_proxy=http://proxy.example:3128", "HTTPS_PROXY=http://proxy.example:3128", "npm_config_https_proxy=http://proxy.example:3128",
			"no_proxy=internal.example,.corp.example,localhost,127.0.0.1,::1",
			"NO_PROXY=internal.example,.corp.example,localhost,127.0.0.1,::1",
			"npm_config_noproxy=internal.example,.corp.example,localhost,127.0.0.1,::1",
		}},
		{"a YAML npm setting in any case drops the group", config.Env{HTTPSProxy: "http://p.example:1"}, sampleJob("NPM_CONFIG_HTTPS_PROXY=x", "no_proxy=mine"), []string{}},
		{"Go settings, private hosts into NO_PROXY, services' aliases", config.Env{
			HTTPSProxy: "http://p.example:1", GoProxy: "https://goproxy.corp.example|direct",
			GoPrivate: "git.corp.example/group,*.internal.example,corp*", GoNoProxy: "git.corp.example",
			GoNoSumDB: "git.corp.example", GoSumDB: "sum.golang.org", GoFlags: "-mod=mod",
		}, func() job.Job {
			j := sampleJob()
			j.Services = []job.Image{{Name: "registry.example.com/db/postgres:16", Alias: "db"}}
			return j
		}(), []string{
			"https_proxy=http://p.example:1", "HTTPS_PROXY=http://p.example:1", "npm_config_https_proxy=http://p.example:1",
			"no_proxy=localhost,127.0.0.1,::1,registry.example.com__db__postgres,registry.example.com-db-postgres,db,git.corp.example,.internal.example",
			"NO_PROXY=localhost,127.0.0.1,::1,registry.example.com__db__postgres,registry.example.com-db-postgres,db,git.corp.example,.internal.example",
			"npm_config_noproxy=localhost,127.0.0.1,::1,registry.example.com__db__postgres,registry.example.com-db-postgres,db,git.corp.example,.internal.example",
			"GOPROXY=https://goproxy.corp.example|direct", "GOPRIVATE=git.corp.example/group,*.internal.example,corp*",
			"GONOPROXY=git.corp.example", "GONOSUMDB=git.corp.example", "GOSUMDB=sum.golang.org", "GOFLAGS=-mod=mod",
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.proxy", "GIT_CONFIG_VALUE_0=http://p.example:1",
		}},
		{"YAML Go settings and extras win, case matters for them", config.Env{GoProxy: "https://a.example", GoFlags: "-mod=mod", Extra: map[string]string{"B": "2", "A": "1"}},
			sampleJob("GOPROXY=https://mine.example", "goflags=ignored-by-go", "A=yaml"), []string{"GOFLAGS=-mod=mod", "B=2"}},
		{"a YAML git config keeps git's env alone", config.Env{JobToken: true, HTTPProxy: "http://p.example:1"}, sampleJob("GIT_CONFIG_COUNT=1"), []string{
			"http_proxy=http://p.example:1", "HTTP_PROXY=http://p.example:1", "npm_config_proxy=http://p.example:1",
			"no_proxy=localhost,127.0.0.1,::1", "NO_PROXY=localhost,127.0.0.1,::1", "npm_config_noproxy=localhost,127.0.0.1,::1",
			"GOPRIVATE=gitlab.example.com", "NETRC=/run/warmcache/netrc",
		}},
		{"a YAML NETRC wins", config.Env{JobToken: true}, sampleJob("NETRC=/builds/netrc"), []string{
			"GOPRIVATE=gitlab.example.com", "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=credential.helper", gitHelperEnv,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Build(tc.cfg, tc.job, tokenFiles(nil))
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Env) != 0 || len(tc.want) != 0 {
				if !reflect.DeepEqual(p.Env, tc.want) {
					t.Errorf("env:\n got %q\nwant %q", p.Env, tc.want)
				}
			}
			for _, kv := range p.Env {
				if strings.Contains(kv, jobToken) {
					t.Errorf("the job token is in the environment: %s", kv)
				}
			}
		})
	}
}

func TestBuildFiles(t *testing.T) {
	cfg := config.Env{JobToken: true, Tokens: []config.Token{
		{Host: "git.corp.example", Login: "ci-bot", TokenFile: "/etc/git-token"},
		{Host: "NPM.corp.example:8443", Login: "npm-bot", TokenFile: "/etc/npm-token", NPMRegistry: "https://npm.corp.example:8443/api/v4/packages/npm"},
		{Host: "gitlab.example.com:8443", Login: "shadowed", TokenFile: "/etc/git-token"},
	}}
	j := sampleJob()
	files := tokenFiles(map[string]string{"/etc/git-token": "glpat-git-0123456789\n", "/etc/npm-token": "  npm-token/with+chars=  "})
	p, err := Build(cfg, j, files)
	if err != nil {
		t.Fatal(err)
	}
	want := []File{
		{Name: NetrcFile, Content: []byte(
			"machine gitlab.example.com login gitlab-ci-token password " + jobToken + "\n" +
				"machine git.corp.example login ci-bot password glpat-git-0123456789\n" +
				"machine npm.corp.example:8443 login npm-bot password npm-token/with+chars=\n" +
				"machine npm.corp.example login npm-bot password npm-token/with+chars=\n" +
				"machine gitlab.example.com:8443 login shadowed password glpat-git-0123456789\n")},
		{Name: GitFile, Content: []byte(
			"https://gitlab-ci-token:" + jobToken + "@gitlab.example.com\n" +
				"https://ci-bot:glpat-git-0123456789@git.corp.example\n" +
				"http://ci-bot:glpat-git-0123456789@git.corp.example\n" +
				"https://npm-bot:npm-token%2Fwith+chars=@npm.corp.example:8443\n" +
				"http://npm-bot:npm-token%2Fwith+chars=@npm.corp.example:8443\n" +
				"https://shadowed:glpat-git-0123456789@gitlab.example.com:8443\n" +
				"http://shadowed:glpat-git-0123456789@gitlab.example.com:8443\n")},
		{Name: NPMFile, Content: []byte("//npm.corp.example:8443/api/v4/packages/npm/:_authToken=npm-token/with+chars=\n")},
	}
	for i := range want {
		if i >= len(p.Files) || p.Files[i].Name != want[i].Name || string(p.Files[i].Content) != string(want[i].Content) {
			t.Errorf("file %d:\n got %+v\nwant %s:\n%s", i, p.Files, want[i].Name, want[i].Content)
		}
	}
	if len(p.Files) != len(want) {
		t.Errorf("got %d files, want %d", len(p.Files), len(want))
	}
	wantSecrets := []string{jobToken, "glpat-git-0123456789", "npm-token/with+chars="}
	if got := Secrets(cfg, j, files); !reflect.DeepEqual(got, wantSecrets) {
		t.Errorf("secrets = %q, want %q", got, wantSecrets)
	}
	// What was delivered, read back from the netrc: every token.
	delivered := NetrcTokens(p.Files[0].Content)
	for _, s := range wantSecrets {
		if !slices.Contains(delivered, s) {
			t.Errorf("NetrcTokens = %q, lacks %q", delivered, s)
		}
	}
	wantEnv := []string{"GOPRIVATE=gitlab.example.com", "NETRC=/run/warmcache/netrc", "npm_config_globalconfig=/run/warmcache/npmrc",
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=credential.helper", gitHelperEnv}
	if !reflect.DeepEqual(p.Env, wantEnv) {
		t.Errorf("env:\n got %q\nwant %q", p.Env, wantEnv)
	}
}

// TestBuildJobTokenHost: the job's own host comes from CI_SERVER_URL, else
// the repository URL; with neither, or no token, there is nothing to give.
func TestBuildJobTokenHost(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*job.Job)
		wantNetrc string
	}{
		{"server URL with a port", func(j *job.Job) { j.Variables[0].Value = "http://127.0.0.1:42891" },
			"machine 127.0.0.1:42891 login gitlab-ci-token password " + jobToken + "\nmachine 127.0.0.1 login gitlab-ci-token password " + jobToken + "\n"},
		{"repository URL without CI_SERVER_URL", func(j *job.Job) { j.Variables = j.Variables[1:] },
			"machine gitlab.example.com login gitlab-ci-token password " + jobToken + "\n"},
		{"no host at all", func(j *job.Job) { j.Variables, j.RepoURL = nil, "" }, ""},
		{"no token", func(j *job.Job) { j.Token = "" }, ""},
		{"a token netrc cannot hold", func(j *job.Job) { j.Token = "two words" }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := sampleJob()
			tc.edit(&j)
			p, err := Build(config.Env{JobToken: true}, j, tokenFiles(nil))
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, f := range p.Files {
				if f.Name == NetrcFile {
					got = string(f.Content)
				}
			}
			if got != tc.wantNetrc {
				t.Errorf("netrc = %q, want %q", got, tc.wantNetrc)
			}
		})
	}
}

func TestBuildBadTokenFiles(t *testing.T) {
	cfg := config.Env{Tokens: []config.Token{
		{Host: "a.example", Login: "a", TokenFile: "/missing"},
		{Host: "b.example", Login: "b", TokenFile: "/empty"},
		{Host: "c.example", Login: "c", TokenFile: "/spaces"},
		{Host: "d.example", Login: "d", TokenFile: "/short"},
		{Host: "e.example", Login: "e", TokenFile: "/good"},
	}}
	files := tokenFiles(map[string]string{"/empty": "\n", "/spaces": "secret-one secret-two\n", "/short": "abc", "/good": "good-token-123"})
	_, err := Build(cfg, sampleJob(), files)
	want := "env.token[0] (a.example): reading token file: open /missing: file does not exist\n" +
		"env.token[1] (b.example): token file /empty is empty\n" +
		"env.token[2] (c.example): token file /spaces must hold one token without spaces or quotes\n" +
		"env.token[3] (d.example): the token in /short is shorter than 8 characters"
	if err == nil || err.Error() != want {
		t.Fatalf("Build error:\n%v\nwant\n%s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file is not classified: %v", err)
	}
	for _, secret := range []string{"secret-one", "secret-two", "abc"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error repeats the file's content %q", secret)
		}
	}
}

func TestSecrets(t *testing.T) {
	cfg := config.Env{Tokens: []config.Token{
		{Host: "a.example", Login: "a", TokenFile: "/a"},
		{Host: "b.example", Login: "b", TokenFile: "/gone"},
	}}
	j := sampleJob()
	j.Credentials = []job.Credential{{Password: "registry-password"}}
	got := Secrets(cfg, j, tokenFiles(map[string]string{"/a": "service-token-a\n"}))
	want := []string{jobToken, "registry-password", "service-token-a"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Secrets = %q, want %q", got, want)
	}
}
