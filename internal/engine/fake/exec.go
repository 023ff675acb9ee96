package fake

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/warmcache/warmcache/internal/engine"
)

// ExecFunc scripts the outcome of Exec: it gets the container name, the
// command and everything written to stdin, and returns the exit and what
// the process printed on stdout and stderr.
type ExecFunc func(name string, cmd []string, stdin []byte) (exit engine.Exit, stdout, stderr string)

// ExecStreamFunc scripts Exec as a process: it reads stdin (never nil;
// empty when Exec has none) and writes stdout and stderr as it goes, so a
// caller sees output before the command ends; it returns the exit.
type ExecStreamFunc func(name string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) engine.Exit

// SetExec scripts Exec (nil restores "exit 0, no output").
func (f *Engine) SetExec(fn ExecFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exec = fn
}

// SetExecStream scripts Exec as a process that streams (nil restores
// SetExec's script); it takes precedence over SetExec.
func (f *Engine) SetExecStream(fn ExecStreamFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execStream = fn
}

// Exec implements engine.Engine. A missing container is engine.ErrNotFound,
// one that is not running is engine.ErrNotRunning, as from Docker. Stdin
// is read to its end before an ExecFunc runs; an ExecStreamFunc reads it
// as it comes.
func (f *Engine) Exec(ctx context.Context, name string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (engine.Exit, error) {
	if err := f.begin(ctx, MethodExec, name); err != nil {
		return engine.Exit{}, err
	}
	f.mu.Lock()
	c, ok := f.containers[name]
	state := Removed
	if ok {
		state = c.State
	}
	fn, stream := f.exec, f.execStream
	f.mu.Unlock()
	switch state {
	case Running:
	case Removed:
		return engine.Exit{}, fmt.Errorf("exec in %s: %w", name, engine.ErrNotFound)
	default:
		return engine.Exit{}, fmt.Errorf("exec in %s: %w", name, engine.ErrNotRunning)
	}
	if stream != nil {
		return f.execStreaming(stream, name, cmd, stdin, stdout, stderr), nil
	}

	var in []byte
	if stdin != nil {
		var err error
		if in, err = io.ReadAll(stdin); err != nil {
			return engine.Exit{}, fmt.Errorf("writing script to exec in %s: %w", name, err)
		}
	}
	if fn == nil {
		return engine.Exit{}, nil
	}
	exit, out, errOut := fn(name, slices.Clone(cmd), in)
	if err := write(stdout, out); err != nil {
		return engine.Exit{}, fmt.Errorf("reading output of exec in %s: %w", name, err)
	}
	if err := write(stderr, errOut); err != nil {
		return engine.Exit{}, fmt.Errorf("reading output of exec in %s: %w", name, err)
	}
	return exit, nil
}

// execStreaming runs a streaming script: nil writers discard, as with
// Docker, and no stdin reads as empty.
func (f *Engine) execStreaming(fn ExecStreamFunc, name string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) engine.Exit {
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	return fn(name, slices.Clone(cmd), stdin, stdout, stderr)
}

func write(w io.Writer, s string) error {
	if w == nil || s == "" {
		return nil
	}
	_, err := io.WriteString(w, s)
	return err
}
