package runnersim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// GitServer is a smart-HTTP git server on loopback (git http-backend behind
// net/http/cgi) that, like GitLab, wants the job token as the password.
type GitServer struct {
	Port string
	SHA  string // the commit of the repository's main branch
	root string
	srv  *http.Server
	// files and added number what AddCommits writes.
	files, added int
}

// Close stops the server and removes the repository.
func (g *GitServer) Close() error {
	return errors.Join(g.srv.Close(), os.RemoveAll(g.root))
}

// StartGitServer serves a repository group/project.git holding files, one
// commit on branch main.
func StartGitServer(token string, files map[string]string) (*GitServer, error) {
	root, err := os.MkdirTemp("", "warmcache-git")
	if err != nil {
		return nil, err
	}
	sha, err := makeRepo(root, files)
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	handler := gitHandler(root, token, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return &GitServer{Port: port, SHA: sha, root: root, srv: srv}, nil
}

// gitHandler serves the repositories under root/repos over smart HTTP
// (git http-backend behind net/http/cgi) to gitlab-ci-token with the job
// token only, like GitLab. A non-empty goImport is the content of the
// go-import meta tag answered to ?go-get=1, as GitLab does for Go modules.
func gitHandler(root, token, goImport string) http.Handler {
	backend := &cgi.Handler{
		Path: "/usr/lib/git-core/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Join(root, "repos"), "GIT_HTTP_EXPORT_ALL=1"},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "gitlab-ci-token" || pass != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="GitLab"`)
			http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
			return
		}
		if goImport != "" && r.URL.Query().Get("go-get") == "1" {
			fmt.Fprintf(w, "<html><head><meta name=\"go-import\" content=\"%s\"></head></html>\n", goImport)
			return
		}
		backend.ServeHTTP(w, r)
	})
}

// makeRepo commits files and clones them bare to repos/group/project.git
// under root, returning the commit.
func makeRepo(root string, files map[string]string) (string, error) {
	work := filepath.Join(root, "work")
	if err := writeFiles(work, files); err != nil {
		return "", err
	}
	git := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=runnersim", "GIT_AUTHOR_EMAIL=runnersim@example.com",
			"GIT_COMMITTER_NAME=runnersim", "GIT_COMMITTER_EMAIL=runnersim@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+root)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %v: %w\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "-A"},
		{"commit", "-q", "-m", "initial commit"},
	} {
		if _, err := git(work, args...); err != nil {
			return "", err
		}
	}
	if _, err := git(root, "clone", "-q", "--bare", work, filepath.Join(root, "repos", "group", "project.git")); err != nil {
		return "", err
	}
	return git(work, "rev-parse", "HEAD")
}

// Values baked into the runner samples, replaced to point at this server.
const (
	samplePort     = "42891"
	sampleSHA      = "4857f0caef76f59f9ed77eaad3c9ba9d13357f1e"
	sampleShortSHA = "4857f0ca"
)

// SampleToken is the job token of the sample response; the scripts send it
// to the git server.
const SampleToken = "glcbt-NGMyZWMyNmI1ODdmODJk"

// SampleScript returns the real runner's script for stage, pointed at this
// server and its commit instead of the ones it was captured against.
func (g *GitServer) SampleScript(stage string) (string, error) {
	s, err := SampleScript(stage)
	if err != nil {
		return "", err
	}
	return strings.NewReplacer(samplePort, g.Port, sampleSHA, g.SHA, sampleShortSHA, g.SHA[:8]).Replace(s), nil
}

// AddCommits adds n commits to the main branch, each writing a file of
// size bytes of incompressible data (history/<i>.bin, numbered on from the
// files already there), and moves SHA to the last one. It writes the
// bare repository directly (git fast-import), so hundreds of commits take
// well under a second; not safe while a job fetches.
func (g *GitServer) AddCommits(n, size int) error {
	bare := filepath.Join(g.root, "repos", "group", "project.git")
	g.added++
	rnd := rand.New(rand.NewPCG(uint64(g.added), uint64(n)))
	var stream bytes.Buffer
	data := make([]byte, size)
	for i := range n {
		for k := range data {
			data[k] = byte(rnd.Uint32())
		}
		file := g.files + i
		fmt.Fprintf(&stream, "commit refs/heads/main\ncommitter runnersim <runnersim@example.com> %d +0000\n", 1767225600+file)
		msg := fmt.Sprintf("add history/%d.bin", file)
		fmt.Fprintf(&stream, "data %d\n%s\n", len(msg), msg)
		if i == 0 {
			stream.WriteString("from refs/heads/main^0\n")
		}
		fmt.Fprintf(&stream, "M 100644 inline history/%d.bin\ndata %d\n", file, len(data))
		stream.Write(data)
		stream.WriteString("\n")
	}
	g.files += n
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = bare
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+g.root)
	cmd.Stdin = &stream
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git fast-import: %w\n%s", err, out)
	}
	cmd = exec.Command("git", "rev-parse", "refs/heads/main")
	cmd.Dir = bare
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git rev-parse: %w", err)
	}
	g.SHA = strings.TrimSpace(string(out))
	return nil
}
