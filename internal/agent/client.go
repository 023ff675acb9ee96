package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/engine"
)

// PIDs tells the host PID of a container's main process: 0 when it is not
// running.
type PIDs interface {
	ContainerPID(ctx context.Context, name string) (int, error)
}

// Dialer connects to the unix socket at path inside the filesystem a host
// process sees (package host: /proc/<pid>/root).
type Dialer func(ctx context.Context, pid int, path string) (net.Conn, error)

// StartWait is how long Exec waits for a container's agent to answer: it
// listens within milliseconds of its container's start, and the build
// container may still be starting (in the background) when its first
// stage comes. Waiting keeps every stage of a job on one path: the
// agent's environment has what the image's entrypoint exported, exec's
// does not.
const StartWait = 2 * time.Second

// Engine is an engine.Engine whose Exec goes through the container's agent
// when one answers (within Wait), and through the wrapped engine's exec
// otherwise.
type Engine struct {
	engine.Engine
	PIDs PIDs
	Dial Dialer
	Wait time.Duration
	Log  *zap.Logger
}

// Exec implements engine.Engine.
func (e Engine) Exec(ctx context.Context, name string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (engine.Exit, error) {
	conn, err := e.connect(ctx, name)
	if err != nil {
		return e.Engine.Exec(ctx, name, cmd, stdin, stdout, stderr)
	}
	exit, err := run(ctx, conn, cmd, stdin, stdout, stderr)
	if errors.Is(err, errRefused) { // nothing was started
		return e.Engine.Exec(ctx, name, cmd, stdin, stdout, stderr)
	}
	if err != nil && ctx.Err() == nil {
		if state, serr := e.ContainerState(context.WithoutCancel(ctx), name); serr == nil && state != "running" {
			return exit, fmt.Errorf("exec in %s: %w (it is %s)", name, engine.ErrNotRunning, state)
		}
		return exit, fmt.Errorf("exec in %s through its agent: %w", name, err)
	}
	return exit, err
}

var errNoAgent = errors.New("no agent")

// connect reaches the container's agent, waiting for it up to e.Wait
// (polling closely at first, then gently: each try is an inspect); an
// error means nothing was sent.
func (e Engine) connect(ctx context.Context, name string) (net.Conn, error) {
	start := time.Now()
	for {
		conn, err := e.try(ctx, name)
		waited := time.Since(start)
		if err == nil || waited >= e.Wait || ctx.Err() != nil {
			if err != nil && e.Wait > 0 && e.Log != nil {
				e.Log.Warn("the stage agent did not answer; exec instead", zap.String("container", name), zap.Error(err))
			}
			return conn, err
		}
		poll := 20 * time.Millisecond
		if waited < 30*time.Millisecond {
			poll = time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
}

// try connects to the container's agent once.
func (e Engine) try(ctx context.Context, name string) (net.Conn, error) {
	if e.PIDs == nil || e.Dial == nil {
		return nil, errNoAgent
	}
	pid, err := e.PIDs.ContainerPID(ctx, name)
	if err != nil || pid == 0 {
		return nil, errNoAgent
	}
	return e.Dial(ctx, pid, SocketPath)
}

var errRefused = errors.New("agent refused the request")

// run sends one request on conn and relays the answer until the exit.
func run(ctx context.Context, conn net.Conn, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (engine.Exit, error) {
	defer conn.Close()
	// Cancelling cuts the stream only, as with exec: the command runs on.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	req, err := json.Marshal(request{Version: version, Cmd: cmd, Stdin: stdin != nil})
	if err != nil {
		return engine.Exit{}, err
	}
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return engine.Exit{}, orCancelled(ctx, fmt.Errorf("sending the request: %w", err))
	}
	go func() {
		if stdin != nil {
			io.Copy(conn, stdin) // a failure shows as the command's
		}
		if hc, ok := conn.(interface{ CloseWrite() error }); ok {
			hc.CloseWrite()
		}
	}()
	var head [5]byte
	for {
		if _, err := io.ReadFull(conn, head[:]); err != nil {
			return engine.Exit{}, orCancelled(ctx, fmt.Errorf("the stream ended before the exit status: %w", err))
		}
		n := binary.BigEndian.Uint32(head[1:])
		if n > maxFrame {
			return engine.Exit{}, fmt.Errorf("frame of %d bytes from the agent", n)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(conn, p); err != nil {
			return engine.Exit{}, orCancelled(ctx, fmt.Errorf("the stream ended before the exit status: %w", err))
		}
		switch head[0] {
		case frameStdout:
			stdout.Write(p)
		case frameStderr:
			stderr.Write(p)
		case frameExit:
			if n != 4 {
				return engine.Exit{}, fmt.Errorf("exit frame of %d bytes", n)
			}
			return engine.Exit{Code: int(int32(binary.BigEndian.Uint32(p)))}, nil
		case frameRefused:
			return engine.Exit{}, fmt.Errorf("%w: %s", errRefused, p)
		default:
			return engine.Exit{}, fmt.Errorf("unknown frame kind %d from the agent", head[0])
		}
	}
}

func orCancelled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("exec cancelled: %w", ctx.Err())
	}
	return err
}
