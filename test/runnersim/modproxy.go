package runnersim

// A loopback Go module proxy for the sample project in testdata/goproject,
// so that job containers build real Go code without reaching the internet:
// the modules are downloaded once per machine through the host's own
// GOPROXY, kept in a module cache on disk, and that cache's download
// directory (which has exactly the GOPROXY protocol's layout) is served
// over HTTP on 127.0.0.1 for the test's lifetime.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
)

// defaultModProxyDir is the machine-wide module cache behind StartModProxy.
// WARMCACHE_TEST_MODPROXY_DIR overrides it; where it cannot be created
// (not root) the user's cache directory is used instead.
const defaultModProxyDir = "/var/cache/warmcache-test-modproxy"

// modProxyMu serialises filling the module cache within a process.
var modProxyMu sync.Mutex

// ModProxy is a read-only Go module proxy on loopback.
type ModProxy struct {
	// URL is the proxy's address for a job's GOPROXY, e.g.
	// "http://127.0.0.1:34567"; job containers reach it with host
	// networking.
	URL string
	srv *http.Server
}

// Close stops the proxy.
func (p *ModProxy) Close() error { return p.srv.Close() }

// StartModProxy serves every module the Go project in projectDir needs over
// HTTP on 127.0.0.1:<random port>. The first call on a machine downloads
// the modules through the host's own GOPROXY; later calls, in this process
// or any other, find them on disk and touch no network.
func StartModProxy(projectDir string) (*ModProxy, error) {
	modProxyMu.Lock()
	dir, err := prepareModProxyCache(projectDir)
	modProxyMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("module proxy for %s: %w", projectDir, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	files := http.FileServer(http.Dir(filepath.Join(dir, "cache", "download")))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				http.Error(w, "read-only module proxy", http.StatusMethodNotAllowed)
				return
			}
			files.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	return &ModProxy{URL: "http://" + ln.Addr().String(), srv: srv}, nil
}

// ReadProject returns the files of the project in dir (slash-separated
// relative path -> content), to put in a git repository or a build dir.
func ReadProject(dir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err == nil && (files["go.mod"] == "" || files["go.sum"] == "") {
		err = fmt.Errorf("%s lacks go.mod or go.sum", dir)
	}
	return files, err
}

// prepareModProxyCache makes sure the module cache holds every module of
// the sample project and returns its directory (GOMODCACHE layout: the
// proxy tree is its cache/download). It is safe against other test
// processes doing the same: the download runs under an exclusive lock on
// a file in the cache, and the go command itself writes every file of the
// cache atomically, so an interrupted download leaves nothing half-written
// that a later run would take as complete.
func prepareModProxyCache(projectDir string) (string, error) {
	files, err := ReadProject(projectDir)
	if err != nil {
		return "", err
	}
	dir, err := modProxyDir()
	if err != nil {
		return "", err
	}
	need := goSumFiles(files["go.sum"])
	if missingFiles(dir, need) == nil {
		return dir, nil // the fast path: all there, no go command, no network
	}

	lock, err := os.OpenFile(filepath.Join(dir, ".warmcache-test.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if missingFiles(dir, need) == nil {
		return dir, nil // another process downloaded them while we waited
	}

	work, err := os.MkdirTemp("", "warmcache-modproxy")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Download through the host's own GOPROXY, in a copy of the project
	// (the go command may add go.sum lines for modules it fetches).
	start := time.Now()
	src := filepath.Join(work, "download")
	if err := writeFiles(src, files); err != nil {
		return "", err
	}
	if err := runGo(ctx, src, map[string]string{
		"GOMODCACHE":  dir,
		"GOFLAGS":     "-modcacherw -mod=mod",
		"GOWORK":      "off",
		"GOTOOLCHAIN": "local",
	}, "mod", "download", "all"); err != nil {
		return "", err
	}
	if missing := missingFiles(dir, need); missing != nil {
		return "", fmt.Errorf("after go mod download all, %s still lacks %s", dir, strings.Join(missing, ", "))
	}

	// Check that the proxy tree alone suffices, the way a job sees it: load
	// every package and test dependency from a file:// proxy of it into an
	// empty module cache, with no checksum database.
	check := filepath.Join(work, "check")
	if err := writeFiles(check, files); err != nil {
		return "", err
	}
	if err := runGo(ctx, check, map[string]string{
		"GOMODCACHE":  filepath.Join(work, "modcache"),
		"GOPROXY":     "file://" + filepath.Join(dir, "cache", "download"),
		"GOSUMDB":     "off",
		"GOFLAGS":     "-modcacherw -mod=mod",
		"GOWORK":      "off",
		"GOTOOLCHAIN": "local",
	}, "list", "-deps", "-test", "./..."); err != nil {
		return "", fmt.Errorf("the downloaded modules do not suffice: %w", err)
	}
	fmt.Fprintf(os.Stderr, "runnersim: downloaded the sample project's modules into %s in %s\n", dir, time.Since(start).Round(time.Millisecond))
	return dir, nil
}

// modProxyDir picks and creates the cache directory.
func modProxyDir() (string, error) {
	if dir := os.Getenv("WARMCACHE_TEST_MODPROXY_DIR"); dir != "" {
		return dir, os.MkdirAll(dir, 0o755)
	}
	err := os.MkdirAll(defaultModProxyDir, 0o755)
	if err == nil {
		return defaultModProxyDir, nil
	}
	base, uerr := os.UserCacheDir()
	if uerr != nil {
		return "", errors.Join(err, uerr)
	}
	dir := filepath.Join(base, "warmcache-test-modproxy")
	return dir, os.MkdirAll(dir, 0o755)
}

// goSumFiles names the proxy files, relative to cache/download, that go.sum
// vouches for: a module's .zip for an "h1:" line, its .mod for a "/go.mod"
// line.
func goSumFiles(gosum string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(gosum))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		path, version, ext := f[0], f[1], ".zip"
		if v, ok := strings.CutSuffix(version, "/go.mod"); ok {
			version, ext = v, ".mod"
		}
		out = append(out, escapeModule(path)+"/@v/"+escapeModule(version)+ext)
	}
	return out
}

// escapeModule applies the module cache's case encoding: "!" and the lower
// case letter for every upper case one (github.com/!burnt!sushi/toml).
func escapeModule(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// missingFiles lists which of files (relative to cache/download) dir lacks.
func missingFiles(dir string, files []string) []string {
	var missing []string
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, "cache", "download", filepath.FromSlash(f))); err != nil {
			missing = append(missing, f)
		}
	}
	return missing
}

func writeFiles(root string, files map[string]string) error {
	for rel, content := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runGo runs the go command in dir with the environment's settings
// replaced by env.
func runGo(ctx context.Context, dir string, env map[string]string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); env[k] == "" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
