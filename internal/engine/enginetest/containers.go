package enginetest

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
)

func containerChecks() []check {
	return []check{
		{"CreateContainer", "creates without starting, listed", func(t *testing.T, x *env) {
			name := x.create(x.spec("c", keepRunning))
			if s := x.state(name); s != "created" {
				t.Errorf("ContainerState = %q, want created", s)
			}
			rs, err := x.e.List(x.ctx, x.labels(nil))
			if err != nil || len(rs) != 1 || rs[0].Type != engine.Container || rs[0].Name != name || !hasLabels(rs[0].Labels, x.labels(nil)) {
				t.Errorf("List = %+v, %v; want container %s with its labels", rs, err, name)
			}
		}},
		{"CreateContainer", "fails when the name exists", func(t *testing.T, x *env) {
			name := x.create(x.spec("c", keepRunning))
			if err := x.e.CreateContainer(x.ctx, x.spec("c", "exit 3")); err == nil {
				t.Error("a second container of the same name was created")
			}
			if s := x.state(name); s != "created" {
				t.Errorf("ContainerState of the first = %q, want created", s)
			}
		}},
		{"CreateContainer", "a missing image wraps ErrNotFound", func(t *testing.T, x *env) {
			c := x.spec("c", keepRunning)
			c.Image = x.name("missing") + ":0"
			x.removeAtCleanup(engine.Resource{Type: engine.Container, Name: c.Name})
			wantErr(t, "CreateContainer", x.e.CreateContainer(x.ctx, c), engine.ErrNotFound)
			_, err := x.e.ContainerState(x.ctx, c.Name)
			wantErr(t, "ContainerState after the failed create", err, engine.ErrNotFound)
		}},
		{"StartContainer", "starts a created container", func(t *testing.T, x *env) {
			name := x.create(x.spec("c", keepRunning))
			x.startCreated(name)
			if s := x.state(name); s != "running" {
				t.Errorf("ContainerState = %q, want running", s)
			}
			if exit, _, _, err := x.exec(name, nil, "sh", "-c", "exit 0"); err != nil || exit.Code != 0 {
				t.Errorf("Exec in the started container = %+v, %v", exit, err)
			}
		}},
		{"StartContainer", "starting a running container is a no-op", func(t *testing.T, x *env) {
			name := x.start(x.spec("c", "echo started; "+keepRunning))
			x.waitLogs(name, "started\n")
			if err := x.e.StartContainer(x.ctx, name); err != nil {
				t.Errorf("StartContainer of a running container: %v", err)
			}
			if s := x.state(name); s != "running" {
				t.Errorf("ContainerState = %q, want running", s)
			}
			// Started once: the process did not run again.
			if exit, _, _, err := x.exec(name, nil, "sh", "-c", "exit 0"); err != nil || exit.Code != 0 {
				t.Errorf("Exec after the second start = %+v, %v", exit, err)
			}
			if logs := x.logs(name, 10); logs != "started\n" {
				t.Errorf("ContainerLogs = %q, want the one start's output", logs)
			}
		}},
		{"StartContainer", "a missing container wraps ErrNotFound", func(t *testing.T, x *env) {
			wantErr(t, "StartContainer", x.e.StartContainer(x.ctx, x.name("missing")), engine.ErrNotFound)
		}},
		{"ContainerState", "created, running, exited", func(t *testing.T, x *env) {
			name := x.create(x.spec("c", "exit 0"))
			if s := x.state(name); s != "created" {
				t.Errorf("ContainerState before the start = %q, want created", s)
			}
			x.startCreated(name)
			x.waitExited(name)
			long := x.running("long")
			if s := x.state(long); s != "running" {
				t.Errorf("ContainerState of a container blocked on its stdin = %q, want running", s)
			}
			rs, err := x.e.List(x.ctx, x.labels(nil))
			if err != nil || len(rs) != 2 {
				t.Errorf("List = %+v, %v; want the exited and the running container", rs, err)
			}
			_, _, _, err = x.exec(name, nil, "sh", "-c", "exit 0")
			wantErr(t, "Exec in an exited container", err, engine.ErrNotRunning)
		}},
		{"ContainerState", "a missing container wraps ErrNotFound", func(t *testing.T, x *env) {
			_, err := x.e.ContainerState(x.ctx, x.name("missing"))
			wantErr(t, "ContainerState", err, engine.ErrNotFound)
		}},
	}
}

func execChecks() []check {
	return []check{
		{"Exec", "stdout and stderr apart; a non-zero exit is a result", func(t *testing.T, x *env) {
			name := x.running("c")
			exit, out, errOut, err := x.exec(name, nil, "sh", "-c", "echo out; echo err >&2; exit 3")
			if err != nil || exit.Code != 3 || out != "out\n" || errOut != "err\n" {
				t.Errorf("Exec = %+v, %v, stdout %q, stderr %q; want code 3, no error, out and err", exit, err, out, errOut)
			}
		}},
		{"Exec", "feeds stdin to its end", func(t *testing.T, x *env) {
			name := x.running("c")
			in := "one\ntwo\na last line without newline"
			exit, out, errOut, err := x.exec(name, strings.NewReader(in), "cat")
			if err != nil || exit.Code != 0 || out != in || errOut != "" {
				t.Errorf("Exec(cat) = %+v, %v, stdout %q, stderr %q; want stdin back", exit, err, out, errOut)
			}
		}},
		{"Exec", "without stdin a reader sees its end", func(t *testing.T, x *env) {
			name := x.running("c")
			exit, out, _, err := x.exec(name, nil, "cat")
			if err != nil || exit.Code != 0 || out != "" {
				t.Errorf("Exec(cat) = %+v, %v, stdout %q; want code 0 and no output", exit, err, out)
			}
		}},
		{"Exec", "streams output as it comes", func(t *testing.T, x *env) {
			name := x.running("c")
			// The command prints, then waits for a line of stdin that is
			// only written once the print has come out of Exec.
			stdinR, stdinW := io.Pipe()
			var stdout, stderr buffer
			outCame, errCame := stdout.when("first\n"), stderr.when("first-err\n")
			type result struct {
				exit engine.Exit
				err  error
			}
			done := make(chan result, 1)
			go func() {
				exit, err := x.e.Exec(x.ctx, name, []string{"sh", "-c", "echo first; echo first-err >&2; read line; echo second"},
					stdinR, &stdout, &stderr)
				done <- result{exit, err}
			}()
			for _, came := range []<-chan struct{}{outCame, errCame} {
				select {
				case <-came:
				case r := <-done:
					t.Fatalf("Exec ended (%+v) before its stdin was written; stdout %q, stderr %q", r, stdout.String(), stderr.String())
				case <-x.ctx.Done():
					stdinW.CloseWithError(x.ctx.Err())
					t.Fatalf("the output did not come before the command ended; stdout %q, stderr %q", stdout.String(), stderr.String())
				}
			}
			if _, err := io.WriteString(stdinW, "go\n"); err != nil {
				t.Fatal(err)
			}
			stdinW.Close()
			r := <-done
			if r.err != nil || r.exit.Code != 0 || stdout.String() != "first\nsecond\n" || stderr.String() != "first-err\n" {
				t.Errorf("Exec = %+v, stdout %q, stderr %q", r, stdout.String(), stderr.String())
			}
		}},
		{"Exec", "nil writers discard the output", func(t *testing.T, x *env) {
			name := x.running("c")
			exit, err := x.e.Exec(x.ctx, name, []string{"sh", "-c", "echo out; echo err >&2; exit 4"}, nil, nil, nil)
			if err != nil || exit.Code != 4 {
				t.Errorf("Exec = %+v, %v; want code 4", exit, err)
			}
		}},
		{"Exec", "concurrent execs in one container", func(t *testing.T, x *env) {
			name := x.running("c")
			outs := make([]string, 6)
			errs := make([]error, len(outs))
			var wg sync.WaitGroup
			for i := range outs {
				wg.Go(func() {
					var exit engine.Exit
					exit, outs[i], _, errs[i] = x.exec(name, nil, "sh", "-c", fmt.Sprintf("echo %d; exit %d", i, i))
					if errs[i] == nil && exit.Code != i {
						errs[i] = fmt.Errorf("exit code %d, want %d", exit.Code, i)
					}
				})
			}
			wg.Wait()
			for i, out := range outs {
				if errs[i] != nil || out != strconv.Itoa(i)+"\n" {
					t.Errorf("exec %d: stdout %q, %v", i, out, errs[i])
				}
			}
		}},
		{"Exec", "a created container wraps ErrNotRunning", func(t *testing.T, x *env) {
			name := x.create(x.spec("c", keepRunning))
			_, _, _, err := x.exec(name, nil, "sh", "-c", "exit 0")
			wantErr(t, "Exec", err, engine.ErrNotRunning)
		}},
		{"Exec", "a missing container wraps ErrNotFound", func(t *testing.T, x *env) {
			_, _, _, err := x.exec(x.name("missing"), nil, "sh", "-c", "exit 0")
			wantErr(t, "Exec", err, engine.ErrNotFound)
		}},
	}
}

// maxLogBytes is the most ContainerLogs returns.
const maxLogBytes = 16 << 10

func logChecks() []check {
	return []check{
		{"ContainerLogs", "the last lines", func(t *testing.T, x *env) {
			name := x.start(x.spec("c", "echo one; echo two; echo three; echo four; echo five"))
			x.waitExited(name)
			for lines, want := range map[int]string{1: "five\n", 2: "four\nfive\n", 5: "one\ntwo\nthree\nfour\nfive\n", 100: "one\ntwo\nthree\nfour\nfive\n"} {
				if got := x.logs(name, lines); got != want {
					t.Errorf("ContainerLogs(%d) = %q, want %q", lines, got, want)
				}
			}
		}},
		{"ContainerLogs", "stdout and stderr together", func(t *testing.T, x *env) {
			name := x.start(x.spec("c", "echo out; echo err >&2"))
			x.waitExited(name)
			// Two streams: their order is the engine's.
			got := strings.Split(strings.TrimSuffix(x.logs(name, 10), "\n"), "\n")
			slices.Sort(got)
			if !slices.Equal(got, []string{"err", "out"}) {
				t.Errorf("ContainerLogs lines = %q, want out and err", got)
			}
		}},
		{"ContainerLogs", "at most 16 KiB", func(t *testing.T, x *env) {
			name := x.start(x.spec("c", "seq 1 5000"))
			x.waitExited(name)
			var all strings.Builder
			for i := 1; i <= 5000; i++ {
				fmt.Fprintln(&all, i)
			}
			want := all.String()[all.Len()-maxLogBytes:]
			if got := x.logs(name, 10000); got != want {
				t.Errorf("ContainerLogs = %d bytes ending %q, want the last %d bytes", len(got), got[max(0, len(got)-20):], maxLogBytes)
			}
		}},
		{"ContainerLogs", "a missing container wraps ErrNotFound", func(t *testing.T, x *env) {
			_, err := x.e.ContainerLogs(x.ctx, x.name("missing"), 10)
			wantErr(t, "ContainerLogs", err, engine.ErrNotFound)
		}},
	}
}

// startCreated starts a created container.
func (x *env) startCreated(name string) {
	x.t.Helper()
	if err := x.e.StartContainer(x.ctx, name); err != nil {
		x.t.Fatalf("StartContainer(%s): %v", name, err)
	}
}

// logs is the last lines of the container's output.
func (x *env) logs(name string, lines int) string {
	x.t.Helper()
	out, err := x.e.ContainerLogs(x.ctx, name, lines)
	if err != nil {
		x.t.Fatalf("ContainerLogs(%s): %v", name, err)
	}
	return out
}

// waitLogs waits until the container's output is want.
func (x *env) waitLogs(name, want string) {
	x.t.Helper()
	x.waitUntil(fmt.Sprintf("the output of %s is %q", name, want), func() (bool, string, error) {
		out, err := x.e.ContainerLogs(x.ctx, name, 100)
		return out == want, fmt.Sprintf("%q", out), err
	})
}

// hasLabels says whether have holds every label of want. An engine may
// add its own (Docker gives a container its image's labels).
func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}
