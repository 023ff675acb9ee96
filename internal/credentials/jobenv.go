// Package credentials works out what the admin's [env] section gives a job: the
// variables of its containers (proxies, Go settings, extras) and the
// credential files delivered into SecretsDir. It is pure: it reads token
// files through the function it is given and talks to no engine.
//
// A variable the job sets itself (any entry of the job payload's
// variables: YAML, project, group or instance) always wins: the runner's
// stage scripts export those after the container starts, and the names
// that tools read in more than one spelling (http_proxy and HTTP_PROXY,
// npm's own settings) are left out as a group, so no spelling of ours
// outranks the job's.
package credentials

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/job"
)

// SecretsDir is where credential files are delivered in the job
// containers: a tmpfs, so they never reach an image layer or a volume on
// disk, and nothing in the image is hidden (unlike a tmpfs over $HOME).
const SecretsDir = "/run/warmcache"

// File names in SecretsDir.
const (
	NetrcFile = "netrc"
	GitFile   = "git-credentials"
	NPMFile   = "npmrc"
)

// jobTokenLogin is the login GitLab expects with a job token.
const jobTokenLogin = "gitlab-ci-token"

// minTokenLen is the shortest token accepted from a file: shorter ones
// would mask common words in the job log (GitLab's own minimum is 8).
const minTokenLen = 8

// Plan is what a job gets.
type Plan struct {
	// Env is set on the job containers; it holds no secret.
	Env []string
	// Files are written into SecretsDir, mode 0600, as the job's user.
	Files []File
}

// File is one credential file.
type File struct {
	Name    string
	Content []byte
}

// credential is a login for one host.
type credential struct {
	scheme string // "" for both http and https
	host   string // host or host:port
	login  string
	token  string
}

// Build works out the plan for job j under cfg. readFile reads a token
// file on the runner host; a missing or malformed one is an error naming
// its config key and path, never its content.
func Build(cfg config.Env, j job.Job, readFile func(string) ([]byte, error)) (Plan, error) {
	creds, npm, err := credentials(cfg, j, readFile)
	if err != nil {
		return Plan{}, err
	}
	var p Plan
	files := credentialFiles(creds, npm)
	for _, f := range files {
		if len(f.Content) > 0 {
			p.Files = append(p.Files, f)
		}
	}
	var aliases []string
	for _, s := range j.Services {
		aliases = append(aliases, job.ServiceAliases(s)...)
	}
	p.Env = compose(cfg, j, p.Files, aliases)
	return p, nil
}

// credentials gathers the job token for the job's own host and every
// service-account token, reading each token file now.
func credentials(cfg config.Env, j job.Job, readFile func(string) ([]byte, error)) ([]credential, []npmAuth, error) {
	var creds []credential
	if cfg.JobToken && validToken(j.Token) {
		if scheme, host := serverHost(j); host != "" {
			creds = append(creds, credential{scheme: scheme, host: host, login: jobTokenLogin, token: j.Token})
		}
	}
	var npm []npmAuth
	var errs []error
	for i, t := range cfg.Tokens {
		token, err := ReadToken(t.TokenFile, readFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("env.token[%d] (%s): %w", i, t.Host, err))
			continue
		}
		creds = append(creds, credential{host: strings.ToLower(t.Host), login: t.Login, token: token})
		if t.NPMRegistry != "" {
			npm = append(npm, npmAuth{registry: t.NPMRegistry, token: token})
		}
	}
	return creds, npm, errors.Join(errs...)
}

// ReadToken reads a token file as prepare does: one line, no spaces
// (netrc has no quoting that every reader understands), at least 8
// characters. An error names the file, never its content.
func ReadToken(path string, readFile func(string) ([]byte, error)) (string, error) {
	data, err := readFile(path)
	if err != nil {
		return "", fmt.Errorf("reading token file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	switch {
	case token == "":
		return "", fmt.Errorf("token file %s is empty", path)
	case !validToken(token):
		return "", fmt.Errorf("token file %s must hold one token without spaces or quotes", path)
	case len(token) < minTokenLen:
		return "", fmt.Errorf("the token in %s is shorter than %d characters", path, minTokenLen)
	}
	return token, nil
}

func validToken(t string) bool {
	return t != "" && !strings.ContainsFunc(t, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\'
	})
}

// serverHost is the job's own GitLab: scheme and host[:port] of
// CI_SERVER_URL from the job payload, else of the repository URL.
func serverHost(j job.Job) (scheme, host string) {
	for _, raw := range []string{j.Variable("CI_SERVER_URL"), j.RepoURL} {
		if u, err := url.Parse(raw); err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") {
			return u.Scheme, strings.ToLower(u.Host)
		}
	}
	return "", ""
}

// hostname drops the port of host[:port], and IPv6 brackets.
func hostname(hostport string) string {
	return (&url.URL{Host: hostport}).Hostname()
}

// port returns the port of host[:port], or "".
func port(hostport string) string {
	return (&url.URL{Host: hostport}).Port()
}
