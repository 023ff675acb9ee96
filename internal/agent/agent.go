// Package agent runs a job's stage scripts without a `docker exec` each.
//
// An exec costs the engine a runtime invocation (runc exec: new process,
// namespaces joined, cgroup, seccomp) and several API calls: 55-90 ms on
// Docker 20.10, paid by every stage of every job. Instead, each job
// container's main process is this binary in agent mode (mounted read-only
// from the engine's host), listening on a unix socket inside the
// container; a stage connects to it through /proc/<pid>/root (the engine
// is local, the driver is root) and the agent starts the stage's shell as
// its own child: same user, same working directory, same cgroup and
// namespaces as an exec, in a few milliseconds.
//
// Anything that keeps the agent from serving (an engine that is not local,
// an agent that could not listen) makes stages fall back to exec; nothing
// is ever run twice.
package agent

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// BinaryPath is where the agent binary is mounted in a job container.
const BinaryPath = "/run/warmcache-agent"

// SocketPath is where the agent listens inside its container: /dev/shm is
// a tmpfs of the container's own, writable by any user, in every Docker
// container, and not shared with the job's other containers.
const SocketPath = "/dev/shm/warmcache-agent.sock"

// Command is a job container's main process when the agent is mounted: a
// shell that runs the agent and, should it not start or ever end, goes on
// as the keep-alive it replaces, so the container lives on and stages use
// exec. The shell handles SIGTERM (a cancelled stage's `kill -1` reaches
// it under an init) without passing an ignored disposition to the agent's
// children, as a trap that ignores it would.
var Command = []string{"sh", "-c", "trap : TERM; " + BinaryPath + " agent; " +
	"trap '' TERM; while :; do read _ || sleep 3600 || exit 0; done"}

// Self is this executable's path, to be mounted into job containers as
// their stage agent, or why it cannot be.
func Self() (string, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err == nil {
		err = Usable(exe)
	}
	if err != nil {
		return "", err
	}
	return exe, nil
}

// Usable says whether the executable at path can be the agent in any
// image: a static ELF binary (no interpreter to find in the image).
func Usable(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("stage agent %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("stage agent %s is dynamically linked (build it with CGO_ENABLED=0); stages use exec", path)
		}
	}
	return nil
}

// version is the request format; an agent of another version (a binary
// upgraded while a job ran) refuses before it starts anything, and the
// stage falls back to exec.
const version = 1

// request opens a connection: the command, then (if Stdin) its standard
// input up to the client's half-close.
type request struct {
	Version int
	Cmd     []string
	Stdin   bool
}

// Frame kinds of the agent's answer: output as it comes, then one exit.
const (
	frameStdout  = 1
	frameStderr  = 2
	frameExit    = 3 // payload: exit code, 4 bytes big-endian
	frameRefused = 4 // payload: why nothing was started
)

// outputDrain is how long output is still forwarded after the command has
// exited, for a background process that holds its stdout (docker exec
// waits about as long).
const outputDrain = 2 * time.Second

// Serve is the agent's main: it listens on SocketPath and serves stages
// until the container ends. When it cannot listen it blocks forever all the
// same, as the main process it replaces did, so the container lives on and
// stages use exec.
func Serve(stderr io.Writer) {
	// A cancelled stage's processes get SIGTERM through `kill -1`, which
	// reaches the agent too when it is not PID 1 (under an init).
	// A handler, not SIG_IGN: the stages it starts get the default.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGINT)
	ln, err := listen(SocketPath)
	if err != nil {
		fmt.Fprintf(stderr, "warmcache agent: %v; stages use exec\n", err)
		select {}
	}
	serve(ln)
}

// listen replaces a socket left by an earlier start of the container.
func listen(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// Only the container's root and the user the container runs as may
	// connect; the driver, root on the host, always may.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		go handle(c)
	}
}

// handle runs one command and reports its output and exit.
func handle(c net.Conn) {
	defer c.Close()
	out := &frameWriter{w: c}
	in := bufio.NewReader(c)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return
	}
	var req request
	if err := json.Unmarshal(line, &req); err != nil || req.Version != version || len(req.Cmd) == 0 {
		out.frame(frameRefused, fmt.Appendf(nil, "agent speaks version %d; request %q not understood", version, line))
		return
	}
	cmd := exec.Command(req.Cmd[0], req.Cmd[1:]...)
	if req.Stdin {
		cmd.Stdin = in
	}
	cmd.Stdout = out.stream(frameStdout)
	cmd.Stderr = out.stream(frameStderr)
	cmd.WaitDelay = outputDrain
	err = cmd.Run()
	code, ok := exitCode(cmd.ProcessState)
	if !ok {
		// The shell never started (no such program): as exec does, a
		// message on stderr and 126/127.
		code = 127
		if !errors.Is(err, exec.ErrNotFound) && !errors.Is(err, os.ErrNotExist) {
			code = 126
		}
		out.stream(frameStderr).Write(fmt.Appendf(nil, "warmcache agent: %v\n", err))
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	out.frame(frameExit, b[:])
}

// exitCode is the code a shell would report: the status, or 128 plus the
// signal that ended the process.
func exitCode(ps *os.ProcessState) (int, bool) {
	if ps == nil {
		return 0, false
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), true
	}
	return ps.ExitCode(), true
}

// frameWriter sends frames on the connection, one at a time. Once the
// client has gone, output is dropped rather than failing the command's
// writes: a stage whose client died runs on, as under exec.
type frameWriter struct {
	mu   sync.Mutex
	w    io.Writer
	gone bool
}

func (f *frameWriter) frame(kind byte, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return
	}
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := f.w.Write(append(h[:], p...)); err != nil {
		f.gone = true
	}
}

func (f *frameWriter) stream(kind byte) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		f.frame(kind, p)
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// maxFrame bounds one frame a client accepts; the agent's frames are one
// pipe read each (64 KiB at most).
const maxFrame = 1 << 20
