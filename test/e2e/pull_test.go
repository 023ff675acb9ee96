package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// registryBin is Debian's docker-registry (distribution 2.8), installed by
// scripts/setup-host.sh. Docker Hub is out of reach; this registry on
// loopback is real, and the engine allows plain HTTP to 127.0.0.0/8.
const registryBin = "/usr/bin/docker-registry"

// dockerCLITimeout bounds each docker CLI call of the pull tests.
const dockerCLITimeout = 2 * time.Minute

// loopRegistry is a registry process serving on 127.0.0.1 for one test.
type loopRegistry struct {
	Host     string // 127.0.0.1:<port>, the registry part of image names
	User     string // empty when the registry needs no login
	Password string
	storage  string // the registry's filesystem storage root
	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has ended
	waitErr  error         // the process's end, set before exited closes
	stopOnce sync.Once
}

// startRegistry starts a registry with its storage in a temp dir, with
// htpasswd logins when withAuth, waits until it answers and stops it when
// the test ends.
func startRegistry(t testing.TB, withAuth bool) *loopRegistry {
	t.Helper()
	dir := t.TempDir()
	var user, password, auth string
	if withAuth {
		user, password = "e2e-puller", "pw-"+rand.Text()
		htpasswd := filepath.Join(dir, "htpasswd")
		// -i reads the password from stdin, so it is in no argument list.
		cmd := exec.Command("htpasswd", "-B", "-i", "-c", htpasswd, user)
		cmd.Stdin = strings.NewReader(password)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("htpasswd (apache2-utils; scripts/setup-host.sh installs it): %v\n%s", err, out)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: warmcache-e2e\n    path: %s\n", htpasswd)
	}
	// The free port is found by binding and releasing it, so another
	// process can take it before the registry binds: try a few ports.
	var errs []error
	for try := 1; try <= 3; try++ {
		r, err := launchRegistry(dir, try, auth)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.User, r.Password = user, password
		t.Cleanup(func() {
			if err := r.stop(); err != nil {
				t.Errorf("stopping the registry: %v", err)
			}
			if log := r.log(); t.Failed() && log != "" {
				t.Logf("registry log:\n%s", log)
			}
		})
		return r
	}
	t.Fatalf("starting %s: %v", registryBin, errors.Join(errs...))
	return nil
}

// launchRegistry starts one registry process on a free port and waits
// until it answers GET /v2/ as it should (200, or 401 with auth).
func launchRegistry(dir string, try int, auth string) (*loopRegistry, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l.Close()
	r := &loopRegistry{
		Host:    l.Addr().String(),
		storage: filepath.Join(dir, "storage"),
		logPath: filepath.Join(dir, fmt.Sprintf("registry-%d.log", try)),
		exited:  make(chan struct{}),
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
%s`, r.storage, r.Host, auth)
	configPath := filepath.Join(dir, fmt.Sprintf("config-%d.yml", try))
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	r.cmd = exec.Command(registryBin, "serve", configPath)
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	// A test binary killed mid-test must not leave a registry running.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w (scripts/setup-host.sh installs docker-registry)", err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()
	want := http.StatusOK
	if auth != "" {
		want = http.StatusUnauthorized
	}
	if err := r.waitReady(want); err != nil {
		return nil, errors.Join(err, r.stop(), fmt.Errorf("log: %s", r.log()))
	}
	return r, nil
}

// waitReady polls GET /v2/ until the registry answers, it exits, or 15s
// pass.
func (r *loopRegistry) waitReady(want int) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.After(15 * time.Second)
	for {
		resp, err := client.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != want {
				return fmt.Errorf("GET http://%s/v2/ answered %s, want %d", r.Host, resp.Status, want)
			}
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("registry on %s exited before answering: %v", r.Host, r.waitErr)
		case <-deadline:
			return fmt.Errorf("registry on %s did not answer within 15s: %v", r.Host, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the registry (SIGTERM, then SIGKILL after 10s) and waits for
// it. It is safe to call more than once.
func (r *loopRegistry) stop() error {
	var err error
	r.stopOnce.Do(func() {
		if sigErr := r.cmd.Process.Signal(syscall.SIGTERM); sigErr != nil && !errors.Is(sigErr, os.ErrProcessDone) {
			err = sigErr
		}
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			err = errors.Join(err, errors.New("registry ignored SIGTERM for 10s; killed"), r.cmd.Process.Kill())
			<-r.exited
		}
	})
	return err
}

func (r *loopRegistry) log() string {
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// pushImage pushes a copy of the busybox test image, marked with one file
// of its own, as <host>/e2e/busybox:<unique tag>, then removes it locally
// so that using it needs a real pull. The mark makes its layer unknown to
// the engine: the pull downloads and extracts it rather than finding every
// layer already there. The image is removed again when the test ends.
// It returns the image reference and the mark's content.
func (r *loopRegistry) pushImage(t testing.TB) (ref, mark string) {
	t.Helper()
	tag := uniqueTag(t)
	ref = r.Host + "/e2e/busybox:" + tag
	mark = "warmcache e2e image " + tag
	// Registered first, so it runs after the cleanup of every job the test
	// creates later (cleanups run last-registered first).
	t.Cleanup(func() { removeImage(t, ref) })

	// A private client config, so the login never touches the host's.
	cli := dockerCLI{configDir: t.TempDir()}
	args := append([]string{"import"}, imageChanges(t, cli, busyboxImage)...)
	cli.must(t, bytes.NewReader(markedLayer(t, cli, busyboxImage, mark)), append(args, "-", ref)...)
	if r.User != "" {
		cli.must(t, strings.NewReader(r.Password), "login", "--username", r.User, "--password-stdin", r.Host)
		defer func() {
			if _, err := cli.run(nil, "logout", r.Host); err != nil {
				t.Errorf("after pushing: %v", err)
			}
		}()
	}
	cli.must(t, nil, "push", ref)
	cli.must(t, nil, "rmi", ref)
	return ref, mark
}

// dropLayers deletes the layer blobs of a pushed image from the
// registry's storage (it has no blob cache configured), so that pulling it
// fetches the manifest and then fails inside the engine's pull stream. It
// works on a registry without auth.
func (r *loopRegistry) dropLayers(t testing.TB, ref string) {
	t.Helper()
	repo, tag, _ := strings.Cut(strings.TrimPrefix(ref, r.Host+"/"), ":")
	req, err := http.NewRequest(http.MethodGet, "http://"+r.Host+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var manifest struct{ Layers []struct{ Digest string } }
	if err := json.NewDecoder(resp.Body).Decode(&manifest); err != nil || resp.StatusCode != http.StatusOK || len(manifest.Layers) == 0 {
		t.Fatalf("manifest of %s: %s, %v, %+v", ref, resp.Status, err, manifest)
	}
	for _, l := range manifest.Layers {
		hex, ok := strings.CutPrefix(l.Digest, "sha256:")
		if !ok || len(hex) < 2 {
			t.Fatalf("layer digest %q of %s", l.Digest, ref)
		}
		if err := os.Remove(filepath.Join(r.storage, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data")); err != nil {
			t.Fatal(err)
		}
	}
}

// dockerCLI runs the docker client with its own config directory.
type dockerCLI struct{ configDir string }

func (c dockerCLI) run(stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCLITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+c.configDir)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (c dockerCLI) must(t testing.TB, stdin io.Reader, args ...string) string {
	t.Helper()
	out, err := c.run(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// markedLayer returns the single layer of a local image plus one file,
// /warmcache-e2e-image holding mark, as a tarball for docker import.
func markedLayer(t testing.TB, cli dockerCLI, image, mark string) []byte {
	t.Helper()
	saved := cli.must(t, nil, "save", image)
	files := map[string][]byte{}
	tr := tar.NewReader(strings.NewReader(saved))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading docker save of %s: %v", image, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if files[hdr.Name], err = io.ReadAll(tr); err != nil {
				t.Fatalf("reading docker save of %s: %v", image, err)
			}
		}
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json of docker save %s: %v", image, err)
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != 1 {
		t.Fatalf("docker save %s: want one image of one layer (test/images/build.sh imports it so), got %+v", image, manifest)
	}
	layer, ok := files[manifest[0].Layers[0]]
	if !ok {
		t.Fatalf("docker save %s has no %s", image, manifest[0].Layers[0])
	}

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	lr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			err = tw.WriteHeader(hdr)
		}
		if err == nil {
			_, err = io.Copy(tw, lr)
		}
		if err != nil {
			t.Fatalf("copying the layer of %s: %v", image, err)
		}
	}
	err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "warmcache-e2e-image", Mode: 0o644, Size: int64(len(mark) + 1), ModTime: time.Now()})
	if err == nil {
		_, err = io.WriteString(tw, mark+"\n")
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatalf("writing the marked layer: %v", err)
	}
	return out.Bytes()
}

// imageChanges returns docker import --change flags that give the new
// image the environment, entrypoint and command of image.
func imageChanges(t testing.TB, cli dockerCLI, image string) []string {
	t.Helper()
	var cfg struct{ Env, Entrypoint, Cmd []string }
	if err := json.Unmarshal([]byte(cli.must(t, nil, "image", "inspect", "--format", "{{json .Config}}", image)), &cfg); err != nil {
		t.Fatalf("config of %s: %v", image, err)
	}
	var flags []string
	for _, kv := range cfg.Env {
		flags = append(flags, "--change", "ENV "+kv)
	}
	if cfg.Entrypoint != nil {
		b, _ := json.Marshal(cfg.Entrypoint)
		flags = append(flags, "--change", "ENTRYPOINT "+string(b))
	}
	if cfg.Cmd != nil {
		b, _ := json.Marshal(cfg.Cmd)
		flags = append(flags, "--change", "CMD "+string(b))
	}
	return flags
}

// removeImage removes ref from the engine if it is there.
func removeImage(t testing.TB, ref string) {
	t.Helper()
	cli := dockerCLI{configDir: t.TempDir()}
	id, err := cli.run(nil, "images", "--quiet", ref)
	if err == nil && strings.TrimSpace(id) != "" {
		_, err = cli.run(nil, "rmi", ref)
	}
	if err != nil {
		t.Errorf("removing test image: %v", err)
	}
}

var tagUnsafe = regexp.MustCompile(`[^a-z0-9_.-]+`)

// uniqueTag names an image tag after the test, unique across runs.
func uniqueTag(t testing.TB) string {
	name := tagUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 80 {
		name = name[:80]
	}
	return fmt.Sprintf("%s-%d", name, nextJobID())
}

// pullConfig is the suite's config with a given number of pull attempts
// (retries wait about 1s, then 2s).
func pullConfig(attempts int) string {
	return defaultConfig + fmt.Sprintf("pull_attempts = %d\n", attempts)
}

// pullComplete is the driver's line for a layer the pull downloaded and
// extracted.
var pullComplete = regexp.MustCompile(`(?m)^  [0-9a-f]{12}: Pull complete$`)

// progressTicks are the engine's per-layer progress events, which the
// driver must keep out of the job log.
var progressTicks = []string{"Downloading", "Extracting", "Waiting", "Verifying Checksum"}

// hasLine says whether out holds line as a whole line.
func hasLine(out, line string) bool {
	return strings.Contains("\n"+out, "\n"+line+"\n")
}

// runsImage checks that the job's build container is the pulled image:
// busybox without bash, carrying the image's mark.
func runsImage(t *testing.T, j *job, mark string) result {
	t.Helper()
	r := j.run("build_script", runnerScript("echo ${BASH_VERSION:-none}\ncat /warmcache-e2e-image\n"))
	if r.Code != 0 || r.Stdout != "none\n"+mark+"\n" {
		t.Errorf("build_script: want stdout %q, got %s", "none\n"+mark+"\n", r)
	}
	return r
}

// TestPullAlways: pull policy always pulls a fresh image from the
// registry, logging one line per layer event and no progress ticks, and
// the job runs in it.
func TestPullAlways(t *testing.T) {
	reg := startRegistry(t, false)
	ref, mark := reg.pushImage(t)
	j := newJob(t, jobSpec{Image: ref, PullPolicy: []string{"always"}})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	for _, want := range []string{
		"Pulling image " + ref + " (attempt 1 of 3)",
		"  Status: Downloaded newer image for " + ref,
	} {
		if !hasLine(r.Stderr, want) {
			t.Errorf("prepare's job log lacks the line %q:\n%s", want, r.Stderr)
		}
	}
	if n := len(pullComplete.FindAllString(r.Stderr, -1)); n != 1 {
		t.Errorf("want one %q line for the image's one layer, got %d:\n%s", "  <id>: Pull complete", n, r.Stderr)
	}
	for _, tick := range progressTicks {
		if strings.Contains(r.Stderr, tick) {
			t.Errorf("prepare's job log has progress ticks %q:\n%s", tick, r.Stderr)
		}
	}
	runsImage(t, j, mark)
}

// TestPullIfNotPresent: if-not-present pulls an absent image, and uses a
// present one without asking the registry (stopped for the second job).
func TestPullIfNotPresent(t *testing.T) {
	reg := startRegistry(t, false)
	ref, mark := reg.pushImage(t)

	first := newJob(t, jobSpec{Image: ref, PullPolicy: []string{"if-not-present"}})
	r := first.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare (image absent): %s", r)
	}
	if want := "Pulling image " + ref + " (attempt 1 of 3)"; !hasLine(r.Stderr, want) {
		t.Errorf("prepare (image absent) lacks the line %q:\n%s", want, r.Stderr)
	}
	runsImage(t, first, mark)

	if err := reg.stop(); err != nil {
		t.Fatal(err)
	}
	second := newJob(t, jobSpec{Image: ref, PullPolicy: []string{"if-not-present"}})
	r = second.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare (image present, registry stopped): %s", r)
	}
	if want := "Using image " + ref + " (present locally, pull policy if-not-present)"; !hasLine(r.Stderr, want) {
		t.Errorf("prepare (image present) lacks the line %q:\n%s", want, r.Stderr)
	}
	if strings.Contains(r.Stderr, "Pulling image") {
		t.Errorf("prepare (image present) pulled:\n%s", r.Stderr)
	}
	runsImage(t, second, mark)
}

// TestPullFallsBackToLocalImage: under [always, if-not-present] a pull
// that keeps failing (registry stopped) is retried, then the local image
// is used.
func TestPullFallsBackToLocalImage(t *testing.T) {
	reg := startRegistry(t, false)
	ref, mark := reg.pushImage(t)
	dockerCLI{configDir: t.TempDir()}.must(t, nil, "pull", "--quiet", ref)
	if err := reg.stop(); err != nil {
		t.Fatal(err)
	}

	j := newJob(t, jobSpec{Image: ref, PullPolicy: []string{"always", "if-not-present"}, Config: pullConfig(2)})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	retry := regexp.MustCompile(`(?m)^Pull failed: .*` + regexp.QuoteMeta(reg.Host) + `.*; retrying in [0-9.]+m?s$`)
	if !retry.MatchString(r.Stderr) {
		t.Errorf("prepare's job log lacks a retry line matching %s:\n%s", retry, r.Stderr)
	}
	for _, want := range []string{
		"Pulling image " + ref + " (attempt 1 of 2)",
		"Pulling image " + ref + " (attempt 2 of 2)",
		"Using image " + ref + " (present locally, pull policy if-not-present)",
	} {
		if !hasLine(r.Stderr, want) {
			t.Errorf("prepare's job log lacks the line %q:\n%s", want, r.Stderr)
		}
	}
	runsImage(t, j, mark)
}

// TestPullErrorInStream: an error the engine reports inside the pull's
// progress stream (here a layer the registry lost after sending the
// manifest) fails prepare as a system failure naming it, not a job that
// starts with no image.
func TestPullErrorInStream(t *testing.T) {
	reg := startRegistry(t, false)
	ref, _ := reg.pushImage(t)
	reg.dropLayers(t, ref)
	j := newJob(t, jobSpec{Image: ref, PullPolicy: []string{"always"}, Config: pullConfig(1)})
	r := j.prepare()
	if r.Code != systemFailureCode {
		t.Fatalf("prepare: want exit %d, got %s", systemFailureCode, r)
	}
	if want := "\nwarmcache: pulling image " + ref + ": pull failed: unknown blob\n"; !strings.HasSuffix(r.Stderr, want) {
		t.Errorf("prepare's job log should end with %q:\n%s", want[1:], r.Stderr)
	}
}

// TestRegistryAuth: a registry that needs a login refuses a pull without
// one (a system failure with one clear line), and accepts the job's own
// credentials and the admin's [[docker.registry]] login; the password
// never reaches the job log.
func TestRegistryAuth(t *testing.T) {
	reg := startRegistry(t, true)
	always := []string{"always"}

	// noLeak fails the test if the registry password is in the output of
	// any of the job's calls; it ends the job with its own cleanup call.
	noLeak := func(t *testing.T, j *job, rs ...result) {
		t.Helper()
		cleaned := j.cleanup()
		if cleaned.Code != 0 {
			t.Errorf("cleanup: %s", cleaned)
		}
		for _, r := range append(rs, cleaned) {
			if strings.Contains(r.Stdout, reg.Password) || strings.Contains(r.Stderr, reg.Password) {
				t.Errorf("the registry password is in the driver's output: %s", r)
			}
		}
	}

	t.Run("no credentials", func(t *testing.T) {
		ref, _ := reg.pushImage(t)
		j := newJob(t, jobSpec{Image: ref, PullPolicy: always, Config: pullConfig(1)})
		r := j.prepare()
		if r.Code != systemFailureCode {
			t.Fatalf("prepare: want exit %d, got %s", systemFailureCode, r)
		}
		lines := strings.Split(strings.TrimSuffix(r.Stderr, "\n"), "\n")
		last := lines[len(lines)-1]
		prefix := "warmcache: pulling image " + ref + ": "
		if !strings.HasPrefix(last, prefix) || !strings.Contains(last, "no basic auth credentials") {
			t.Errorf("last line of prepare's job log = %q, want %q followed by the registry's refusal (no basic auth credentials)", last, prefix)
		}
		noLeak(t, j, r)
	})

	t.Run("job credentials", func(t *testing.T) {
		ref, mark := reg.pushImage(t)
		j := newJob(t, jobSpec{Image: ref, PullPolicy: always})
		setCredentials(t, j, map[string]any{"type": "registry", "url": reg.Host, "username": reg.User, "password": reg.Password})
		r := j.prepare()
		if r.Code != 0 {
			t.Fatalf("prepare: %s", r)
		}
		if want := "Pulling image " + ref + " (attempt 1 of 3)"; !hasLine(r.Stderr, want) {
			t.Errorf("prepare's job log lacks the line %q:\n%s", want, r.Stderr)
		}
		noLeak(t, j, r, runsImage(t, j, mark))
	})

	t.Run("admin registry login", func(t *testing.T) {
		ref, mark := reg.pushImage(t)
		pwFile := filepath.Join(t.TempDir(), "registry-password")
		if err := os.WriteFile(pwFile, []byte(reg.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		config := defaultConfig + fmt.Sprintf("[[docker.registry]]\nhost = %q\nusername = %q\npassword_file = %q\n", reg.Host, reg.User, pwFile)
		j := newJob(t, jobSpec{Image: ref, PullPolicy: always, Config: config})
		r := j.prepare()
		if r.Code != 0 {
			t.Fatalf("prepare: %s", r)
		}
		if want := "Pulling image " + ref + " (attempt 1 of 3)"; !hasLine(r.Stderr, want) {
			t.Errorf("prepare's job log lacks the line %q:\n%s", want, r.Stderr)
		}
		noLeak(t, j, r, runsImage(t, j, mark))
	})
}

// setCredentials writes registry logins into the job's response file, as
// GitLab sends them in the job payload (runnersim.Spec has no field for
// them).
func setCredentials(t testing.TB, j *job, creds ...map[string]any) {
	t.Helper()
	path := filepath.Join(j.Dir, "response.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var resp map[string]any
	if err := json.Unmarshal(data, &resp); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	list := []any{}
	for _, c := range creds {
		list = append(list, c)
	}
	resp["credentials"] = list
	if data, err = json.Marshal(resp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
