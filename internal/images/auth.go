package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	helperclient "github.com/docker/docker-credential-helpers/client"
	helpercreds "github.com/docker/docker-credential-helpers/credentials"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/protocol"
)

// EnvDockerAuthConfig is the variable holding a docker config.json for
// the job's pulls.
const EnvDockerAuthConfig = "DOCKER_AUTH_CONFIG"

// Where a login came from, as the job log names it (the runner's names
// where it has one).
const (
	sourceJobVariable = "$" + EnvDockerAuthConfig
	sourceRunnerEnv   = "$" + EnvDockerAuthConfig + " of the runner's environment"
	sourceJobPayload  = "job payload (GitLab Registry)"
)

// AuthSources is everything a job's registry logins come from, in the
// order the Docker executor reads them; the first source that names a
// registry path keeps it.
type AuthSources struct {
	// JobAuthConfig is the job's DOCKER_AUTH_CONFIG (which includes the
	// runner's `environment`), a docker config.json.
	JobAuthConfig string
	// RunnerAuthConfig is DOCKER_AUTH_CONFIG of the driver's own
	// environment, read after the job's.
	RunnerAuthConfig string
	// HomeDir is the runner user's home: its .docker/config.json (else
	// .dockercfg) is read. "" skips it.
	HomeDir string
	// Credentials are the job payload's registry logins.
	Credentials []job.Credential
	// Registries are the admin's [[docker.registry]] logins, last.
	Registries []config.Registry
}

// SourcesFor gathers a job's login sources: the job's DOCKER_AUTH_CONFIG
// as the runner resolved it (CUSTOM_ENV_, else the job response's), the
// driver's own, the runner user's home ($HOME, else the user's entry), the
// payload's credentials and the admin's logins.
func SourcesFor(j job.Job, cfg config.Config, getenv func(string) string) AuthSources {
	s := AuthSources{
		JobAuthConfig:    getenv(protocol.CustomEnvPrefix + EnvDockerAuthConfig),
		RunnerAuthConfig: getenv(EnvDockerAuthConfig),
		HomeDir:          getenv("HOME"),
		Credentials:      j.Credentials,
		Registries:       cfg.Docker.Registries,
	}
	if s.JobAuthConfig == "" {
		s.JobAuthConfig = j.Variable(EnvDockerAuthConfig)
	}
	if s.HomeDir == "" {
		if u, err := user.Current(); err == nil {
			s.HomeDir = u.HomeDir
		}
	}
	return s
}

// login is one registry path's login and where it came from.
type login struct {
	path   string // a registry host, maybe with a repository path under it
	source string
	auth   engine.RegistryAuth
	// admin is the index of the [[docker.registry]] entry, whose password
	// file is read when the login is used; -1 for other sources.
	admin int
}

// Logins are a job's registry logins, resolved.
type Logins struct {
	list []login
	// registries are the admin's, for the password files.
	registries []config.Registry
}

// ErrHelperPath is a credential helper named with a path: the runner
// refuses to run it, and so does warmcache.
var ErrHelperPath = errors.New("a credential helper name must not contain a path")

// ResolveLogins reads every source in order, running the credential
// helpers (docker-credential-<name>) their config names, as the runner
// does. A source that cannot be read is skipped with a warning for the
// job log; only a helper named with a path fails, a build failure if the
// job's variable names it.
func ResolveLogins(s AuthSources) (Logins, []string, error) {
	l := Logins{registries: s.Registries}
	var warnings []string
	add := func(source string, auths []types.AuthConfig) {
		for _, a := range auths {
			l.add(login{path: registryPath(a.ServerAddress), source: source, admin: -1, auth: engine.RegistryAuth{
				Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken,
			}})
		}
	}
	for _, src := range []struct{ name, text string }{{sourceJobVariable, s.JobAuthConfig}, {sourceRunnerEnv, s.RunnerAuthConfig}} {
		auths, err := readAuthConfig(strings.NewReader(src.text), "")
		switch {
		case errors.Is(err, ErrHelperPath) && src.name == sourceJobVariable:
			return Logins{}, nil, &protocol.BuildFailure{Reason: fmt.Sprintf("%s: %v", src.name, err)}
		case errors.Is(err, ErrHelperPath):
			return Logins{}, nil, fmt.Errorf("%s: %w", src.name, err)
		case err != nil:
			warnings = append(warnings, failedSource(src.name, err))
		default:
			add(src.name, auths)
		}
	}
	if s.HomeDir != "" {
		file, auths, err := readHomeConfig(s.HomeDir)
		switch {
		case errors.Is(err, ErrHelperPath):
			return Logins{}, nil, fmt.Errorf("%s: %w", file, err)
		case err != nil:
			warnings = append(warnings, failedSource(file, err))
		default:
			add(file, auths)
		}
	}
	for _, c := range s.Credentials {
		if c.Type == "registry" {
			add(sourceJobPayload, []types.AuthConfig{{Username: c.Username, Password: c.Password, ServerAddress: c.URL}})
		}
	}
	for i, r := range s.Registries {
		l.add(login{path: registryPath(r.Host), source: fmt.Sprintf("docker.registry[%d]", i), admin: i, auth: engine.RegistryAuth{Username: r.Username}})
	}
	return l, warnings, nil
}

func failedSource(source string, err error) string {
	return fmt.Sprintf("Failed to resolve credentials from %s: %s. Credentials from this source will not be used.", source, strings.Join(strings.Fields(err.Error()), " "))
}

// add keeps the first login of each registry path. An empty one (a
// config.json placeholder, a helper that has nothing for the registry)
// leaves the path to the next sources.
func (l *Logins) add(n login) {
	a := n.auth
	empty := n.admin < 0 && a.Username == "" && a.Password == "" && a.IdentityToken == "" && a.RegistryToken == ""
	if empty || n.path == "" || slices.ContainsFunc(l.list, func(o login) bool { return o.path == n.path }) {
		return
	}
	l.list = append(l.list, n)
}

// For returns the login for ref and its source: that of the longest
// registry path that is ref's repository or a parent of it, as the runner
// matches them; nil when none is.
func (l Logins) For(ref string) (*engine.RegistryAuth, string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, "", nil // the engine says what is wrong with ref
	}
	host := canonicalRegistry(strings.ToLower(reference.Domain(named)))
	for p := host + "/" + reference.Path(named); p != ""; p = parentPath(p) {
		i := slices.IndexFunc(l.list, func(n login) bool { return n.path == p })
		if i < 0 {
			continue
		}
		n := l.list[i]
		auth := n.auth
		auth.Server = host
		if n.admin >= 0 {
			pw, err := os.ReadFile(l.registries[n.admin].PasswordFile)
			if err != nil {
				return nil, "", fmt.Errorf("docker.registry[%d].password_file: %w", n.admin, err)
			}
			auth.Password = strings.TrimSpace(string(pw))
		}
		return &auth, n.source, nil
	}
	return nil, "", nil
}

func parentPath(p string) string {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// registryPath spells a login's registry key as image paths are matched:
// a URL ("https://index.docker.io/v1/") stands for its host; otherwise
// the host with any repository path, without a tag; the host in lower
// case and Docker Hub under one name.
func registryPath(key string) string {
	lower := strings.ToLower(key)
	if rest, ok := strings.CutPrefix(lower, "https://"); ok || strings.HasPrefix(lower, "http://") {
		if !ok {
			rest = lower[len("http://"):]
		}
		host, _, _ := strings.Cut(rest, "/")
		return canonicalRegistry(host)
	}
	p := strings.TrimSuffix(key, "/")
	if slash := strings.LastIndex(p, "/"); slash >= 0 {
		if colon := strings.LastIndex(p, ":"); colon > slash {
			p = p[:colon]
		}
	}
	host, rest, found := strings.Cut(p, "/")
	host = canonicalRegistry(strings.ToLower(host))
	if !found {
		return host
	}
	return host + "/" + rest
}

// readHomeConfig reads the runner user's docker config, as the runner
// does: .docker/config.json, else the legacy .dockercfg. A home without
// either has no logins.
func readHomeConfig(home string) (string, []types.AuthConfig, error) {
	var errs []error
	for _, name := range []string{filepath.Join(home, ".docker", "config.json"), filepath.Join(home, ".dockercfg")} {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer f.Close()
		auths, err := readAuthConfig(f, name)
		return name, auths, err
	}
	return filepath.Join(home, ".docker", "config.json"), nil, errors.Join(errs...)
}

// readAuthConfig decodes a docker config.json with the Docker CLI's own
// code and gathers its logins: its auths, then those of its credsStore
// and its credHelpers, each helper run as docker-credential-<name> from
// PATH. The result is sorted by registry key.
func readAuthConfig(r io.Reader, filename string) ([]types.AuthConfig, error) {
	cf := configfile.New(filename)
	if err := cf.LoadFromReader(r); err != nil {
		return nil, err
	}
	if !cf.ContainsAuth() {
		return nil, nil
	}
	auths := maps.Clone(cf.GetAuthConfigs())
	if cf.CredentialsStore != "" {
		if cf.CredentialsStore != filepath.Base(cf.CredentialsStore) {
			return nil, fmt.Errorf("credsStore %q: %w", cf.CredentialsStore, ErrHelperPath)
		}
		stored, err := helperGetAll(cf.CredentialsStore)
		if err != nil {
			return nil, fmt.Errorf("credsStore %s: %w", cf.CredentialsStore, err)
		}
		maps.Copy(auths, stored)
	}
	for _, registry := range slices.Sorted(maps.Keys(cf.CredentialHelpers)) {
		helper := cf.CredentialHelpers[registry]
		if helper != filepath.Base(helper) {
			return nil, fmt.Errorf("credHelpers %q: %w", helper, ErrHelperPath)
		}
		a, err := helperGet(helper, registry)
		if err != nil {
			return nil, fmt.Errorf("credHelpers %s for %s: %w", helper, registry, err)
		}
		if a.ServerAddress == "" {
			a.ServerAddress = registry
		}
		auths[registry] = a
	}
	out := make([]types.AuthConfig, 0, len(auths))
	for _, key := range slices.Sorted(maps.Keys(auths)) {
		a := auths[key]
		if a.ServerAddress == "" {
			a.ServerAddress = key
		}
		out = append(out, a)
	}
	return out, nil
}

// helperTimeout bounds one call of a credential helper.
const helperTimeout = time.Minute

// tokenUsername is the username a helper returns with an identity token.
const tokenUsername = "<token>"

// helperGet asks docker-credential-<name> for server's login, as the
// Docker CLI's native store does: none when it has none.
func helperGet(name, server string) (types.AuthConfig, error) {
	creds, err := helperclient.Get(helperProgram(name), server)
	if helpercreds.IsErrCredentialsNotFound(err) {
		return types.AuthConfig{}, nil
	}
	if err != nil {
		return types.AuthConfig{}, err
	}
	a := types.AuthConfig{ServerAddress: server}
	if creds.Username == tokenUsername {
		a.IdentityToken = creds.Secret
	} else {
		a.Username, a.Password = creds.Username, creds.Secret
	}
	return a, nil
}

// helperGetAll is every login docker-credential-<name> lists.
func helperGetAll(name string) (map[string]types.AuthConfig, error) {
	servers, err := helperclient.List(helperProgram(name))
	if err != nil {
		return nil, err
	}
	out := make(map[string]types.AuthConfig, len(servers))
	for server := range servers {
		if out[server], err = helperGet(name, server); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// helperProgram runs docker-credential-<name> from PATH with the
// protocol of docker-credential-helpers. Unlike the Docker CLI's, its
// stderr is never copied to ours, which is the job log, and each call is
// bounded in time.
func helperProgram(name string) helperclient.ProgramFunc {
	return func(args ...string) helperclient.Program {
		return &helperCall{name: "docker-credential-" + name, args: args}
	}
}

type helperCall struct {
	name  string
	args  []string
	stdin io.Reader
}

func (h *helperCall) Input(in io.Reader) { h.stdin = in }

func (h *helperCall) Output() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.name, h.args...)
	cmd.Stdin = h.stdin
	return cmd.Output() // with Stderr unset, stderr stays in the error
}

// RegistryAuth finds the login for each image a job pulls. The sources
// are read at the first pull that needs a login (credential helpers run
// once per job), their warnings go to the job log then; each pull with a
// login says where it came from, never the secret. An admin's password is
// read from its file at each use, so a rotated password needs no restart.
func RegistryAuth(s AuthSources, say func(format string, args ...any)) func(ref string) (*engine.RegistryAuth, error) {
	resolve := sync.OnceValues(func() (Logins, error) {
		l, warnings, err := ResolveLogins(s)
		for _, w := range warnings {
			say("WARNING: %s", w)
		}
		return l, err
	})
	return func(ref string) (*engine.RegistryAuth, error) {
		l, err := resolve()
		if err != nil {
			return nil, err
		}
		auth, source, err := l.For(ref)
		if auth != nil {
			say("Authenticating with credentials from %s", source)
		}
		return auth, err
	}
}
