package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	wcjob "github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/test/runnersim"
)

// fwdProxy is a forward HTTP proxy on loopback that records what it is
// asked and answers itself: plain requests get "proxied by <name>",
// CONNECT is refused (no job may reach the internet).
type fwdProxy struct {
	URL  string
	name string
	mu   sync.Mutex
	seen []string
}

func startFwdProxy(t *testing.T, name string) *fwdProxy {
	t.Helper()
	p := &fwdProxy{name: name}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if r.Method == http.MethodConnect {
			p.seen = append(p.seen, "CONNECT "+r.Host)
		} else {
			p.seen = append(p.seen, r.Method+" "+r.URL.String())
		}
		p.mu.Unlock()
		if r.Method == http.MethodConnect {
			http.Error(w, "no tunnels from this proxy", http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "proxied by %s\n", p.name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p.URL = "http://" + ln.Addr().String()
	return p
}

// requests lists what the proxy was asked so far.
func (p *fwdProxy) requests() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.seen, "\n")
}

func startPrivateModProxy(t *testing.T, login, token string) *runnersim.PrivateModProxy {
	t.Helper()
	p, err := runnersim.StartPrivateModProxy(login, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// netConfig is an admin's config for a network with a proxy, a private
// module proxy needing a service token and an internal host.
func netConfig(proxy string, mods *runnersim.PrivateModProxy, tokenFile string) string {
	return hostNetworkConfig + `
[env]
http_proxy = "` + proxy + `"
https_proxy = "` + proxy + `"
no_proxy = "internal.example"
goproxy = "` + mods.URL + `"
gonosumdb = "private.example"
goflags = "-mod=mod"
extra = { SSL_CERT_FILE = "/builds/ca.pem" }

[[env.token]]
host = "` + mods.Host + `"
login = "svc"
token_file = "` + tokenFile + `"
`
}

// buildPrivateModule is a job script that trusts the module proxy's
// certificate (not a secret), then builds a program using the private
// module: no credential anywhere in the job.
func buildPrivateModule(mods *runnersim.PrivateModProxy) string {
	return "cat > /builds/ca.pem <<'EOF'\n" + mods.CertPEM + "EOF\n" +
		`mkdir -p "$CI_PROJECT_DIR/app" && cd "$CI_PROJECT_DIR/app"` + "\n" +
		"printf 'module example.com/app\\n\\ngo 1.22\\n\\nrequire " + runnersim.PrivateModule + " " + runnersim.PrivateVersion + "\\n' > go.mod\n" +
		"printf 'package main\\n\\nimport \"" + runnersim.PrivateModule + "\"\\n\\nfunc main() { println(lib.Greeting()) }\\n' > main.go\n" +
		"go build -o app .\n./app\n" +
		`cd "$CI_PROJECT_DIR"` + "\n"
}

// TestPrivateModulesAndProxy: with nothing in the job's YAML, a job
// clones a private repository of its own GitLab with its job token,
// builds a Go program needing a private module from a proxy that wants a
// service token, sends its traffic through the admin's proxy except to
// NO_PROXY hosts, and the log shows neither token, even printed by the
// job itself in two halves. No token is found in any container's
// inspect, the image, a cache or the builds volume.
func TestPrivateModulesAndProxy(t *testing.T) {
	const svcToken = "svc-token-e2e-0123456789"
	proxy := startFwdProxy(t, "fwd")
	mods := startPrivateModProxy(t, "svc", svcToken)
	git := startGitServer(t, sampleToken, map[string]string{"README.md": "private repository content\n"})
	tokenFile := writeTempFile(t, "svc-token", svcToken+"\n")
	j := newJob(t, jobSpec{
		Config: netConfig(proxy.URL, mods, tokenFile),
		// The job's own GitLab is the git server.
		Vars: map[string]string{"CI_SERVER_URL": "http://localhost:" + git.Port},
	})
	prep := j.prepare()
	if prep.Code != 0 {
		t.Fatalf("prepare: %s", prep)
	}
	script := buildPrivateModule(mods) +
		`git clone -q http://localhost:` + git.Port + `/group/project.git private-clone && cat private-clone/README.md` + "\n" +
		"curl -sS http://public.example/through-proxy\n" +
		"curl -sS https://secure.example/ >/dev/null 2>&1 || echo https refused by the proxy\n" +
		"git ls-remote http://public.example/group/other.git >/dev/null 2>&1 || echo git went through the proxy\n" +
		"curl -sS --max-time 10 http://internal.example/ >/dev/null 2>&1 || echo internal.example not through the proxy\n" +
		// The job prints both tokens itself, each in two writes.
		`printf '%s' "${CI_JOB_TOKEN:0:9}"; sleep 0.2; printf '%s\n' "${CI_JOB_TOKEN:9}"` + "\n" +
		`svc=$(awk '$4 == "svc" { print $6; exit }' "$NETRC")` + "\n" +
		`printf '%s' "${svc:0:7}" >&2; sleep 0.2; printf '%s\n' "${svc:7}" >&2` + "\n"
	r := j.run("build_script", j.Script(script))
	if r.Code != 0 {
		t.Fatalf("build_script: %s", r)
	}
	for _, want := range []string{
		"private repository content\n", "proxied by fwd\n", "https refused by the proxy\n",
		"git went through the proxy\n", "internal.example not through the proxy\n", "[MASKED]\n",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("build_script stdout lacks %q:\n%s", want, r)
		}
	}
	if !strings.Contains(r.Stderr, runnersim.PrivateGreeting) || !strings.Contains(r.Stderr, "[MASKED]\n") {
		t.Errorf("build_script stderr lacks the greeting or [MASKED]:\n%s", r)
	}

	seen := proxy.requests()
	for _, want := range []string{"GET http://public.example/through-proxy", "CONNECT secure.example:443", "GET http://public.example/group/other.git/info/refs"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the proxy did not see %q; it saw:\n%s", want, seen)
		}
	}
	for _, direct := range []string{"internal.example", "localhost", "127.0.0.1", "private.example"} {
		if strings.Contains(seen, direct) {
			t.Errorf("the proxy saw traffic for NO_PROXY host %s:\n%s", direct, seen)
		}
	}
	if mr := strings.Join(mods.Requests(), "\n"); !strings.Contains(mr, "/@v/"+runnersim.PrivateVersion+".zip authorized") {
		t.Errorf("the module proxy never served the module with the service token:\n%s", mr)
	}

	checkNoSecrets(t, j, prep.String()+r.String(), sampleToken, svcToken)
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// TestJobTokenFetchesPrivateModule: a job of a GitLab instance whose
// host is in GOPRIVATE (by default) fetches and builds a private module of
// that instance with nothing but its job token, given by warmcache: Go's
// discovery authenticates from the netrc, its git clone through the
// credential helper. Neither the module cache (which keeps the clone) nor
// anything else keeps the token.
func TestJobTokenFetchesPrivateModule(t *testing.T) {
	host, err := runnersim.StartGoModHost(sampleToken)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	j := newJob(t, jobSpec{
		Config: hostNetworkConfig + "[env]\ngoflags = \"-mod=mod\"\n" +
			"extra = { SSL_CERT_FILE = \"/builds/ca.pem\", GIT_SSL_CAINFO = \"/builds/ca.pem\" }\n",
		Vars: map[string]string{"CI_SERVER_URL": "https://" + host.IP},
	})
	prep := j.prepare()
	if prep.Code != 0 {
		t.Fatalf("prepare: %s", prep)
	}
	r := j.run("build_script", j.Script("cat > /builds/ca.pem <<'EOF'\n"+host.CertPEM+"EOF\n"+
		`echo "GOPRIVATE=$GOPRIVATE"`+"\n"+
		`mkdir -p app && cd app`+"\n"+
		"printf 'module example.com/app\\n\\ngo 1.22\\n\\nrequire "+host.Module+" "+runnersim.PrivateVersion+"\\n' > go.mod\n"+
		"printf 'package main\\n\\nimport \""+host.Module+"\"\\n\\nfunc main() { println(privmod.Greeting()) }\\n' > main.go\n"+
		"go build -o app .\n./app\n"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "GOPRIVATE="+host.IP+"\n") || !strings.Contains(r.Stderr, runnersim.PrivateGreeting) {
		t.Fatalf("build_script: %s", r)
	}
	checkNoSecrets(t, j, prep.String()+r.String(), sampleToken)
}

// TestPrivateModuleWrongToken: a wrong service token fails the build with
// the proxy's 401 in the log, and the wrong token itself is masked.
func TestPrivateModuleWrongToken(t *testing.T) {
	const wrong = "wrong-token-e2e-987654"
	proxy := startFwdProxy(t, "fwd")
	mods := startPrivateModProxy(t, "svc", "svc-token-e2e-0123456789")
	j := newJob(t, jobSpec{Config: netConfig(proxy.URL, mods, writeTempFile(t, "svc-token", wrong))})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", j.Script(buildPrivateModule(mods)+`grep -o 'password [^ ]*' "$NETRC"`+"\n"))
	if r.Code != buildFailureCode {
		t.Fatalf("build_script: want exit %d, got %s", buildFailureCode, r)
	}
	if !strings.Contains(r.Stderr, "401 Unauthorized") {
		t.Errorf("the failure does not say 401 Unauthorized:\n%s", r)
	}
	if strings.Contains(r.String(), wrong) {
		t.Errorf("the wrong token reached the log:\n%s", r)
	}
	if mr := strings.Join(mods.Requests(), "\n"); !strings.Contains(mr, "refused") || strings.Contains(mr, "authorized\n") {
		t.Errorf("module proxy requests:\n%s", mr)
	}
}

// TestMissingTokenFile: a token file that cannot be read fails prepare as
// a system failure with one line naming the key, the host and the file.
func TestMissingTokenFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	j := newJob(t, jobSpec{Config: defaultConfig + "[[env.token]]\nhost = \"git.corp.example\"\nlogin = \"svc\"\ntoken_file = \"" + missing + "\"\n"})
	r := j.prepare()
	want := "warmcache: env.token[0] (git.corp.example): reading token file: open " + missing + ": no such file or directory\n"
	if r.Code != systemFailureCode || !strings.HasSuffix(r.Stderr, want) || strings.Count(r.Stderr, "warmcache:") != 1 {
		t.Errorf("prepare: want exit %d ending in %q, got %s", systemFailureCode, want, r)
	}
}

// TestYAMLProxyWins: a job's own HTTP_PROXY replaces the admin's in every
// spelling: its traffic goes to its proxy, none to the admin's.
func TestYAMLProxyWins(t *testing.T) {
	admin, mine := startFwdProxy(t, "admin"), startFwdProxy(t, "mine")
	j := newJob(t, jobSpec{
		Config: hostNetworkConfig + "[env]\nhttp_proxy = \"" + admin.URL + "\"\n",
		Vars:   map[string]string{"HTTP_PROXY": mine.URL},
	})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", j.Script(
		`echo "HTTP_PROXY=$HTTP_PROXY http_proxy=${http_proxy-unset} npm_config_proxy=${npm_config_proxy-unset} git=$(git config http.proxy || echo unset)"`+"\n"+
			`cd "$(mktemp -d)" && GOPROXY=http://goproxy.public.example go mod download public.example/m@v1.0.0 || echo download failed`+"\n"))
	if r.Code != 0 {
		t.Fatalf("build_script: %s", r)
	}
	if want := "HTTP_PROXY=" + mine.URL + " http_proxy=unset npm_config_proxy=unset git=unset\n"; !strings.HasPrefix(r.Stdout, want) {
		t.Errorf("stdout = %q, want it to start with %q", r.Stdout, want)
	}
	if seen := mine.requests(); !strings.Contains(seen, "GET http://goproxy.public.example/public.example/m/@v/v1.0.0.info") {
		t.Errorf("the job's proxy saw:\n%s\nbuild_script: %s", seen, r)
	}
	if seen := admin.requests(); seen != "" {
		t.Errorf("the admin's proxy saw:\n%s", seen)
	}
}

// TestCredentialsOfNonRootUser: a job running as another user owns its
// credential files (mode 0600) and uses them; another user of the same
// container cannot read them.
func TestCredentialsOfNonRootUser(t *testing.T) {
	git := startGitServer(t, sampleToken, map[string]string{"README.md": "private\n"})
	j := newJob(t, jobSpec{User: "ci", Config: hostNetworkConfig,
		Vars: map[string]string{"CI_SERVER_URL": "http://localhost:" + git.Port}})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	r := j.run("build_script", j.Script("stat -c '%U %a %n' /run/warmcache/*\n"+
		"git ls-remote http://localhost:"+git.Port+"/group/project.git | cut -f2\n"))
	want := "ci 600 /run/warmcache/git-credentials\nci 600 /run/warmcache/netrc\nHEAD\nrefs/heads/main\n"
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("build_script: want stdout %q, got %s", want, r)
	}
	build := loadJob(t, j).Key().Name(naming.KindBuild)
	out, err := exec.Command("docker", "exec", "-u", "1001", build, "cat", "/run/warmcache/netrc").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Permission denied") || strings.Contains(string(out), sampleToken) {
		t.Errorf("another user read the netrc: %v\n%s", err, out)
	}
}

// checkNoSecrets greps the job log, `docker inspect` of the job's
// containers and of the image, and every file of the project's cache
// volumes and the job's builds volume for each secret; the credential
// files' own volume must be a tmpfs.
func checkNoSecrets(t *testing.T, j *job, log string, secrets ...string) {
	t.Helper()
	found := func(where string, data []byte) {
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("secret %.6s... found in %s", s, where)
			}
		}
	}
	found("the job log", []byte(log))
	ctx := context.Background()
	payload := loadJob(t, j)
	key := payload.Key()
	for _, kind := range []naming.Kind{naming.KindHelper, naming.KindBuild} {
		out, err := exec.Command("docker", "inspect", key.Name(kind)).CombinedOutput()
		if err != nil {
			t.Fatalf("docker inspect: %v\n%s", err, out)
		}
		found("docker inspect "+key.Name(kind), out)
	}
	for _, args := range [][]string{{"image", "inspect", debianImage}, {"history", "--no-trunc", debianImage}} {
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %v: %v\n%s", args, err, out)
		}
		found("docker "+strings.Join(args, " "), out)
	}
	vols, err := eng.List(ctx, map[string]string{naming.LabelCacheProjectID: fmt.Sprint(payload.ProjectID)})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{key.Name(naming.KindBuilds)}
	// The job writes nothing in cache_dir: that volume may be empty; every
	// other one must hold files for the search to mean anything.
	mayBeEmpty := map[string]bool{}
	for _, v := range vols {
		names = append(names, v.Name)
		mayBeEmpty[v.Name] = v.Labels[naming.LabelCacheProfile] == "cache-dir"
	}
	if len(names) < 3 {
		t.Errorf("volumes to search: %v, want the builds volume and the go caches", names)
	}
	for _, name := range names {
		info, err := eng.InspectVolume(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		files := 0
		err = filepath.WalkDir(info.Mountpoint, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			found("volume "+name+" file "+path, data)
			return nil
		})
		if err != nil || (files == 0 && !mayBeEmpty[name]) {
			t.Errorf("searching volume %s: %v (%d files)", name, err, files)
		}
	}
	secretsVol, err := eng.InspectVolume(ctx, key.Name(naming.KindSecrets))
	if err != nil || !secretsVol.Tmpfs {
		t.Errorf("the credentials' volume: %+v, %v; want a tmpfs", secretsVol, err)
	}
	if mounts, err := os.ReadFile("/proc/mounts"); err != nil || !strings.Contains(string(mounts), "tmpfs "+secretsVol.Mountpoint+" tmpfs ") {
		t.Errorf("%s is not mounted as a tmpfs on the host (%v)", secretsVol.Mountpoint, err)
	}
}

// loadJob reads the job as the driver does, from the environment the
// simulated runner gives it.
func loadJob(t *testing.T, j *job) wcjob.Job {
	t.Helper()
	env := map[string]string{}
	for _, kv := range j.Command().Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	payload, err := wcjob.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return payload
}

func writeTempFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// BenchmarkJobCredentials measures what the job token's credentials cost
// a bare job (the tmpfs volume and one exec into the helper), alternating
// jobs with them (the default) and without in one loop.
func BenchmarkJobCredentials(b *testing.B) {
	var with, without []time.Duration
	for i := 0; i < b.N; i++ {
		with = append(with, bareJob(b, jobSpec{}))
		without = append(without, bareJob(b, jobSpec{Config: defaultConfig + "[env]\njob_token = false\n"}))
	}
	wm, om := median(with), median(without)
	b.ReportMetric(float64(wm.Milliseconds()), "ms/job-with-credentials")
	b.ReportMetric(float64(om.Milliseconds()), "ms/job-without")
	b.ReportMetric(float64(wm)/float64(om), "with/without")
}
