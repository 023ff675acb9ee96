package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
)

// startAgent serves on a socket in a temporary directory and returns an
// Engine that reaches it for container "c" (PID 7), with wrapped as the
// engine it falls back to.
func startAgent(t *testing.T, wrapped engine.Engine) Engine {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln)
	return Engine{Engine: wrapped, PIDs: pids{"c": 7}, Dial: func(ctx context.Context, pid int, path string) (net.Conn, error) {
		if pid != 7 || path != SocketPath {
			t.Errorf("dialled pid %d path %s, want 7 %s", pid, path, SocketPath)
		}
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
}

type pids map[string]int

func (p pids) ContainerPID(_ context.Context, name string) (int, error) { return p[name], nil }

// execOnly is a wrapped engine that records the execs it gets.
type execOnly struct {
	engine.Engine
	execs *[]string
}

func (e execOnly) Exec(_ context.Context, name string, cmd []string, _ io.Reader, stdout, _ io.Writer) (engine.Exit, error) {
	*e.execs = append(*e.execs, name+": "+strings.Join(cmd, " "))
	if stdout != nil {
		io.WriteString(stdout, "from exec\n")
	}
	return engine.Exit{Code: 3}, nil
}

func TestAgentRunsScriptFromStdin(t *testing.T) {
	var execs []string
	e := startAgent(t, execOnly{execs: &execs})
	var stdout, stderr bytes.Buffer
	script := "echo out\necho err >&2\nexit 5\necho never\n"
	exit, err := e.Exec(context.Background(), "c", []string{"sh", "-c", "exec sh"}, strings.NewReader(script), &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 5 {
		t.Errorf("exit code %d, want 5", exit.Code)
	}
	if got, want := stdout.String(), "out\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got := stderr.String(); got != "err\n" {
		t.Errorf("stderr %q, want %q", got, "err\n")
	}
	if len(execs) != 0 {
		t.Errorf("fell back to exec: %v", execs)
	}
}

func TestAgentNoStdin(t *testing.T) {
	e := startAgent(t, nil)
	var stdout bytes.Buffer
	// Without stdin the command reads end of file at once.
	exit, err := e.Exec(context.Background(), "c", []string{"sh", "-c", "cat; echo done"}, nil, &stdout, nil)
	if err != nil || exit.Code != 0 || stdout.String() != "done\n" {
		t.Fatalf("exit %v, err %v, stdout %q", exit, err, stdout.String())
	}
}

func TestAgentSignalledExitCode(t *testing.T) {
	e := startAgent(t, nil)
	exit, err := e.Exec(context.Background(), "c", []string{"sh", "-c", "kill -TERM $$"}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 128+15 {
		t.Errorf("exit code %d, want 143", exit.Code)
	}
}

func TestAgentMissingProgram(t *testing.T) {
	e := startAgent(t, nil)
	var stderr bytes.Buffer
	exit, err := e.Exec(context.Background(), "c", []string{"/no/such/shell"}, nil, nil, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 127 || !strings.Contains(stderr.String(), "/no/such/shell") {
		t.Errorf("exit %d, stderr %q; want 127 and the program named", exit.Code, stderr.String())
	}
}

func TestFallsBackToExec(t *testing.T) {
	var execs []string
	e := startAgent(t, execOnly{execs: &execs})
	var stdout bytes.Buffer
	// A container that is not running (PID 0) or has no agent goes to exec.
	exit, err := e.Exec(context.Background(), "other", []string{"sh"}, nil, &stdout, nil)
	if err != nil || exit.Code != 3 || stdout.String() != "from exec\n" || len(execs) != 1 {
		t.Fatalf("exit %v, err %v, stdout %q, execs %v", exit, err, stdout.String(), execs)
	}
	e.Dial = func(context.Context, int, string) (net.Conn, error) { return nil, errors.New("no such file") }
	if _, err := e.Exec(context.Background(), "c", []string{"sh"}, nil, nil, nil); err != nil || len(execs) != 2 {
		t.Fatalf("err %v, execs %v: an agent that does not answer must fall back", err, execs)
	}
	// Waiting for an agent that never answers ends in exec all the same.
	e.Wait = 40 * time.Millisecond
	if _, err := e.Exec(context.Background(), "c", []string{"sh"}, nil, nil, nil); err != nil || len(execs) != 3 {
		t.Fatalf("err %v, execs %v: an agent that never answers within the wait must fall back", err, execs)
	}
}

// An agent still starting (its socket not there yet) is waited for: the
// stage goes through it, not through exec.
func TestWaitsForAStartingAgent(t *testing.T) {
	var execs []string
	e := startAgent(t, execOnly{execs: &execs})
	dial, tries := e.Dial, 0
	e.Dial = func(ctx context.Context, pid int, path string) (net.Conn, error) {
		if tries++; tries < 3 {
			return nil, errors.New("no such file or directory")
		}
		return dial(ctx, pid, path)
	}
	e.Wait = StartWait
	var stdout bytes.Buffer
	exit, err := e.Exec(context.Background(), "c", []string{"sh", "-c", "echo via agent"}, nil, &stdout, nil)
	if err != nil || exit.Code != 0 || stdout.String() != "via agent\n" || len(execs) != 0 || tries != 3 {
		t.Fatalf("exit %v, err %v, stdout %q, execs %v, tries %d", exit, err, stdout.String(), execs, tries)
	}
}

func TestOtherVersionFallsBackWithoutRunning(t *testing.T) {
	var execs []string
	e := startAgent(t, execOnly{execs: &execs})
	marker := filepath.Join(t.TempDir(), "ran")
	conn, err := e.connect(context.Background(), "c")
	if err != nil {
		t.Fatal(err)
	}
	// An agent of another version answers "refused" before starting.
	io.WriteString(conn, `{"Version":99,"Cmd":["sh","-c","touch `+marker+`"]}`+"\n")
	var head [5]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil || head[0] != frameRefused {
		t.Fatalf("answer %v, err %v; want a refusal", head, err)
	}
	conn.Close()
	if m, _ := filepath.Glob(marker); len(m) != 0 {
		t.Error("a refused request ran its command")
	}
}

func TestCancelReturns(t *testing.T) {
	e := startAgent(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Cancelled once the command runs (its first output has come).
	started := writerFunc(func(p []byte) (int, error) { cancel(); return len(p), nil })
	go func() {
		_, err := e.Exec(ctx, "c", []string{"sh", "-c", "echo started; exec sleep 5"}, nil, started, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want cancelled", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Exec did not return on cancel")
	}
}

func TestDynamicBinaryNotUsable(t *testing.T) {
	err := Usable("/bin/sh") // Debian's dash needs its libc
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("Usable(/bin/sh) = %v, want dynamically linked", err)
	}
	if err := Usable("/no/such/file"); err == nil {
		t.Error("Usable of a missing file succeeded")
	}
}
