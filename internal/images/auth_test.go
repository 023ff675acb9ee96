package images

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/protocol"
)

// fakeHelper is docker-credential-fake: it knows three registries, lists
// the one of its store, and appends each call to $FAKE_HELPER_CALLS.
const fakeHelper = `#!/bin/sh
echo "$1" >> "$FAKE_HELPER_CALLS"
case "$1" in
get)
	read -r server
	case "$server" in
	helper.example.com) printf '{"ServerURL":"helper.example.com","Username":"helper-user","Secret":"helper-pw"}' ;;
	token.example.com) printf '{"ServerURL":"token.example.com","Username":"<token>","Secret":"id-token"}' ;;
	store.example.com) printf '{"ServerURL":"store.example.com","Username":"store-user","Secret":"store-pw"}' ;;
	*) echo "credentials not found in native keychain"; exit 1 ;;
	esac ;;
list) printf '{"store.example.com":"store-user"}' ;;
*) exit 1 ;;
esac
`

// brokenHelper is docker-credential-broken: every call fails.
const brokenHelper = "#!/bin/sh\necho 'the keychain is locked' >&2\nexit 3\n"

// withHelpers puts the fake credential helpers first on PATH and returns
// the file their calls are recorded in.
func withHelpers(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, script := range map[string]string{"docker-credential-fake": fakeHelper, "docker-credential-broken": brokenHelper} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	calls := filepath.Join(dir, "calls")
	t.Setenv("FAKE_HELPER_CALLS", calls)
	return calls
}

func basicAuth(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
}

// homeWith writes a home directory whose .docker/config.json is json.
func homeWith(t *testing.T, json string) string {
	t.Helper()
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(json), 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// Every source in the runner's order, each naming some registries: each
// image gets the login of the longest registry path that holds it, from
// the first source that names that path.
func TestLoginsFor(t *testing.T) {
	withHelpers(t)
	home := homeWith(t, fmt.Sprintf(`{
		"auths": {
			"registry.example.com/deep/group": {"auth": %q},
			"registry.example.com": {"auth": %q},
			"placeholder.example.com": {}
		},
		"credsStore": "fake",
		"credHelpers": {"helper.example.com": "fake", "token.example.com": "fake", "unknown.example.com": "fake"}
	}`, basicAuth("home-deep", "home-deep-pw"), basicAuth("home-user", "home-pw")))
	homeFile := filepath.Join(home, ".docker", "config.json")
	pwDir := t.TempDir()
	ghcrPW, gitlabPW, placeholderPW := filepath.Join(pwDir, "ghcr"), filepath.Join(pwDir, "gitlab"), filepath.Join(pwDir, "placeholder")
	for path, pw := range map[string]string{ghcrPW: "  ghcr-pw\n", gitlabPW: "admin-gitlab-pw", placeholderPW: "placeholder-pw"} {
		if err := os.WriteFile(path, []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := AuthSources{
		JobAuthConfig: fmt.Sprintf(`{"auths": {
			"registry.example.com": {"auth": %q},
			"https://index.docker.io/v1/": {"username": "hub-user", "password": "hub-pw"}
		}}`, basicAuth("job-var-user", "job-var-pw")),
		RunnerAuthConfig: fmt.Sprintf(`{"auths": {
			"registry.example.com": {"auth": %q},
			"runner.example.com:5000": {"auth": %q},
			"https://Quay.IO/v1/": {"registrytoken": "quay-token"}
		}}`, basicAuth("runner-user", "runner-pw"), basicAuth("runner-only", "runner-only-pw")),
		HomeDir: home,
		Credentials: []job.Credential{
			{Type: "registry", URL: "registry.gitlab.com", Username: "gitlab-ci-token", Password: "job-token"},
			{Type: "registry", URL: "registry.example.com", Username: "payload-user", Password: "payload-pw"},
			{Type: "other", URL: "other.example.com", Username: "x", Password: "x"},
		},
		Registries: []config.Registry{
			{Host: "ghcr.io", Username: "bot", PasswordFile: ghcrPW},
			{Host: "registry.gitlab.com", Username: "admin", PasswordFile: gitlabPW},
			{Host: "placeholder.example.com", Username: "admin2", PasswordFile: placeholderPW},
		},
	}
	logins, warnings, err := ResolveLogins(s)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("ResolveLogins: %v, warnings %q", err, warnings)
	}
	digest := "@sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		ref    string
		want   *engine.RegistryAuth
		source string
	}{
		// The job's variable before the runner's, the home file and the payload.
		{"registry.example.com/group/app:1", &engine.RegistryAuth{Username: "job-var-user", Password: "job-var-pw", Server: "registry.example.com"}, "$DOCKER_AUTH_CONFIG"},
		// A longer registry path wins, whatever its source; the host's case does not matter.
		{"registry.example.com/deep/group/app", &engine.RegistryAuth{Username: "home-deep", Password: "home-deep-pw", Server: "registry.example.com"}, homeFile},
		{"Registry.Example.COM/deep/group/sub/app" + digest, &engine.RegistryAuth{Username: "home-deep", Password: "home-deep-pw", Server: "registry.example.com"}, homeFile},
		{"registry.example.com/deep/groupie/app", &engine.RegistryAuth{Username: "job-var-user", Password: "job-var-pw", Server: "registry.example.com"}, "$DOCKER_AUTH_CONFIG"},
		// Docker Hub under each of its names.
		{"alpine:3", &engine.RegistryAuth{Username: "hub-user", Password: "hub-pw", Server: "docker.io"}, "$DOCKER_AUTH_CONFIG"},
		{"library/alpine" + digest, &engine.RegistryAuth{Username: "hub-user", Password: "hub-pw", Server: "docker.io"}, "$DOCKER_AUTH_CONFIG"},
		{"docker.io/gitlab/gitlab-runner", &engine.RegistryAuth{Username: "hub-user", Password: "hub-pw", Server: "docker.io"}, "$DOCKER_AUTH_CONFIG"},
		{"index.docker.io/library/alpine", &engine.RegistryAuth{Username: "hub-user", Password: "hub-pw", Server: "docker.io"}, "$DOCKER_AUTH_CONFIG"},
		// The runner's environment, a port is part of the host.
		{"runner.example.com:5000/app", &engine.RegistryAuth{Username: "runner-only", Password: "runner-only-pw", Server: "runner.example.com:5000"}, "$DOCKER_AUTH_CONFIG of the runner's environment"},
		{"runner.example.com/app", nil, ""},
		{"runner.example.com:5001/app", nil, ""},
		{"quay.io/org/app", &engine.RegistryAuth{RegistryToken: "quay-token", Server: "quay.io"}, "$DOCKER_AUTH_CONFIG of the runner's environment"},
		// Credential helpers of the home file.
		{"helper.example.com/app", &engine.RegistryAuth{Username: "helper-user", Password: "helper-pw", Server: "helper.example.com"}, homeFile},
		{"token.example.com/app", &engine.RegistryAuth{IdentityToken: "id-token", Server: "token.example.com"}, homeFile},
		{"store.example.com/app", &engine.RegistryAuth{Username: "store-user", Password: "store-pw", Server: "store.example.com"}, homeFile},
		{"unknown.example.com/app", nil, ""}, // the helper has nothing for it
		// The payload before the admin's login; the admin's after everything.
		{"registry.gitlab.com/group/project/image:tag", &engine.RegistryAuth{Username: "gitlab-ci-token", Password: "job-token", Server: "registry.gitlab.com"}, "job payload (GitLab Registry)"},
		{"ghcr.io/owner/app", &engine.RegistryAuth{Username: "bot", Password: "ghcr-pw", Server: "ghcr.io"}, "docker.registry[0]"},
		// An empty placeholder in config.json leaves the registry to later sources.
		{"placeholder.example.com/app", &engine.RegistryAuth{Username: "admin2", Password: "placeholder-pw", Server: "placeholder.example.com"}, "docker.registry[2]"},
		{"other.example.com/app", nil, ""}, // not a registry credential
		{"localhost:5000/app", nil, ""},
		{"Not A Reference!", nil, ""},
	}
	for _, tt := range tests {
		got, source, err := logins.For(tt.ref)
		if err != nil || !reflect.DeepEqual(got, tt.want) || source != tt.source {
			t.Errorf("For(%q) = %+v from %q, %v; want %+v from %q", tt.ref, got, source, err, tt.want, tt.source)
		}
	}
}

// registryPath spells the keys of every source the one way images are
// matched against.
func TestRegistryPath(t *testing.T) {
	for key, want := range map[string]string{
		"registry.example.com":             "registry.example.com",
		"Registry.Example.com/Group/x":     "registry.example.com/Group/x",
		"registry.example.com/group/app:1": "registry.example.com/group/app",
		"registry.example.com:5000":        "registry.example.com:5000",
		"registry.example.com:5000/":       "registry.example.com:5000",
		"localhost:5000/group":             "localhost:5000/group",
		"https://index.docker.io/v1/":      "docker.io",
		"HTTP://registry-1.docker.io":      "docker.io",
		"index.docker.io":                  "docker.io",
		"https://registry.example.com/v2/": "registry.example.com",
		"[::1]:5000":                       "[::1]:5000",
	} {
		if got := registryPath(key); got != want {
			t.Errorf("registryPath(%q) = %q, want %q", key, got, want)
		}
	}
}

// A source that cannot be read is skipped with one line, as the runner
// does, and the others still count; a helper named with a path fails the
// job, a build failure when the job's variable names it.
func TestResolveLoginsBadSources(t *testing.T) {
	withHelpers(t)
	payload := []job.Credential{{Type: "registry", URL: "registry.example.com", Username: "payload-user", Password: "payload-pw"}}
	secret := "s3cret-in-the-bad-json"
	t.Run("bad JSON and a failing helper", func(t *testing.T) {
		s := AuthSources{
			JobAuthConfig:    `{"auths": {"registry.example.com": {"password": "` + secret + `"}`,
			RunnerAuthConfig: `{"auths": {"registry.example.com": {"auth": "not base64!"}}}`,
			HomeDir:          homeWith(t, `{"credHelpers": {"registry.example.com": "broken"}}`),
			Credentials:      payload,
		}
		logins, warnings, err := ResolveLogins(s)
		if err != nil {
			t.Fatal(err)
		}
		home := filepath.Join(s.HomeDir, ".docker", "config.json")
		want := []string{
			"Failed to resolve credentials from $DOCKER_AUTH_CONFIG: unexpected EOF. Credentials from this source will not be used.",
			"Failed to resolve credentials from $DOCKER_AUTH_CONFIG of the runner's environment: illegal base64 data at input byte 3. Credentials from this source will not be used.",
			"Failed to resolve credentials from " + home + ": credHelpers broken for registry.example.com: error getting credentials - err: exit status 3, out: ``. Credentials from this source will not be used.",
		}
		if !slices.Equal(warnings, want) {
			t.Errorf("warnings =\n%q\nwant\n%q", warnings, want)
		}
		for _, w := range warnings {
			if strings.Contains(w, secret) {
				t.Errorf("a warning shows the secret: %q", w)
			}
		}
		if got, source, _ := logins.For("registry.example.com/app"); got == nil || got.Username != "payload-user" || source != sourceJobPayload {
			t.Errorf("the payload's login is not used: %+v from %q", got, source)
		}
	})
	t.Run("helper with a path in the job's variable", func(t *testing.T) {
		_, _, err := ResolveLogins(AuthSources{JobAuthConfig: `{"credsStore": "../../tmp/evil"}`})
		var bf *protocol.BuildFailure
		if !errors.As(err, &bf) || !errors.Is(err, ErrHelperPath) && err.Error() != `$DOCKER_AUTH_CONFIG: credsStore "../../tmp/evil": a credential helper name must not contain a path` {
			t.Errorf("error = %v, want a build failure naming the helper", err)
		}
	})
	t.Run("helper with a path in the runner's file", func(t *testing.T) {
		home := homeWith(t, `{"credHelpers": {"registry.example.com": "/usr/bin/evil"}}`)
		_, _, err := ResolveLogins(AuthSources{HomeDir: home})
		var bf *protocol.BuildFailure
		if err == nil || errors.As(err, &bf) || !errors.Is(err, ErrHelperPath) {
			t.Errorf("error = %v, want a system failure wrapping ErrHelperPath", err)
		}
	})
	t.Run("legacy .dockercfg is read when config.json is absent", func(t *testing.T) {
		home := t.TempDir()
		data := fmt.Sprintf(`{"auths": {"registry.example.com": {"auth": %q}}}`, basicAuth("legacy", "legacy-pw"))
		if err := os.WriteFile(filepath.Join(home, ".dockercfg"), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		logins, warnings, err := ResolveLogins(AuthSources{HomeDir: home})
		if got, source, _ := logins.For("registry.example.com/app"); err != nil || len(warnings) > 0 || got == nil || got.Username != "legacy" || source != filepath.Join(home, ".dockercfg") {
			t.Errorf("got %+v from %q, %v, %q", got, source, err, warnings)
		}
	})
}

// RegistryAuth reads the sources once per job, at the first pull, says
// where each login came from without its secret, and reads an admin's
// password at each use.
func TestRegistryAuth(t *testing.T) {
	calls := withHelpers(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("admin-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := AuthSources{
		JobAuthConfig: `{"credsStore": "fake"}`,
		HomeDir:       homeWith(t, `not json`),
		Registries: []config.Registry{
			{Host: "registry.example.com", Username: "admin", PasswordFile: pwFile},
			{Host: "broken.example.com", Username: "u", PasswordFile: filepath.Join(t.TempDir(), "missing")},
		},
	}
	var log []string
	auth := RegistryAuth(s, func(format string, args ...any) { log = append(log, fmt.Sprintf(format, args...)) })
	if data, _ := os.ReadFile(calls); len(data) > 0 {
		t.Fatalf("helpers ran before any pull: %q", data)
	}
	got, err := auth("store.example.com/app")
	if err != nil || got == nil || got.Password != "store-pw" {
		t.Fatalf("store login = %+v, %v", got, err)
	}
	if got, err = auth("registry.example.com/app"); err != nil || got.Password != "admin-pw" {
		t.Fatalf("admin login = %+v, %v", got, err)
	}
	if err := os.WriteFile(pwFile, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ = auth("registry.example.com/app"); got.Password != "rotated" {
		t.Errorf("password after rotation = %q, want rotated", got.Password)
	}
	if got, err = auth("public.example.com/app"); got != nil || err != nil {
		t.Errorf("no login = %+v, %v", got, err)
	}
	if _, err = auth("broken.example.com/app"); err == nil || !strings.HasPrefix(err.Error(), "docker.registry[1].password_file: open ") {
		t.Errorf("missing password file: %v", err)
	}
	home := filepath.Join(s.HomeDir, ".docker", "config.json")
	want := []string{
		"WARNING: Failed to resolve credentials from " + home + ": invalid character 'o' in literal null (expecting 'u'). Credentials from this source will not be used.",
		"Authenticating with credentials from $DOCKER_AUTH_CONFIG",
		"Authenticating with credentials from docker.registry[0]",
		"Authenticating with credentials from docker.registry[0]",
	}
	if !slices.Equal(log, want) {
		t.Errorf("job log =\n%q\nwant\n%q", log, want)
	}
	if data, _ := os.ReadFile(calls); string(data) != "list\nget\n" {
		t.Errorf("helper calls = %q, want one list and one get for the whole job", data)
	}
}

// The job's DOCKER_AUTH_CONFIG is the one the runner resolved
// (CUSTOM_ENV_), else the job response's; the driver's own comes second.
func TestSourcesFor(t *testing.T) {
	j := job.Job{
		Variables:   []job.Variable{{Key: "DOCKER_AUTH_CONFIG", Value: "from-response"}},
		Credentials: []job.Credential{{Type: "registry", URL: "r.example.com"}},
	}
	cfg := config.Default()
	cfg.Docker.Registries = []config.Registry{{Host: "r.example.com", Username: "u", PasswordFile: "/p"}}
	env := map[string]string{"CUSTOM_ENV_DOCKER_AUTH_CONFIG": "from-runner", "DOCKER_AUTH_CONFIG": "from-driver", "HOME": "/home/ci"}
	got := SourcesFor(j, cfg, func(k string) string { return env[k] })
	want := AuthSources{JobAuthConfig: "from-runner", RunnerAuthConfig: "from-driver", HomeDir: "/home/ci", Credentials: j.Credentials, Registries: cfg.Docker.Registries}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SourcesFor = %+v, want %+v", got, want)
	}
	delete(env, "CUSTOM_ENV_DOCKER_AUTH_CONFIG")
	if got := SourcesFor(j, cfg, func(k string) string { return env[k] }); got.JobAuthConfig != "from-response" {
		t.Errorf("without CUSTOM_ENV_: JobAuthConfig = %q, want the response's", got.JobAuthConfig)
	}
}
