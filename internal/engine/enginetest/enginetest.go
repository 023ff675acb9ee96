// Package enginetest is the conformance suite of the engine.Engine
// contract (internal/engine/engine.go). The same checks run against the
// fake engine (internal/engine/fake, in its unit tests) and against the
// Docker engine (test/e2e), so that what unit tests learn from the fake is
// what Docker does.
//
// Every check is a subtest named after the method and the behaviour its
// doc comment promises. Checks run in parallel, each on the engine
// newEngine gives it, with resources named after the subtest (see
// Options.Prefix) and labelled with Label; each subtest removes what it
// made at t.Cleanup and fails if anything labelled for it is left.
//
// The suite's containers run Options.Image with the entrypoint `sh -c` and
// scripts made only of these commands, separated by "; ", with unquoted
// words, so that an engine that runs no processes (the fake) can stand in
// for them:
//
//	echo WORD... [>&2]   print the words on stdout (or stderr)
//	seq FIRST LAST       print the numbers FIRST to LAST, one a line
//	cat                  copy stdin to stdout
//	read VAR             read one line of stdin
//	exec COMMAND         run COMMAND in place of the shell
//	exit CODE            end with CODE
//
// Exec also runs `cat` on its own, without a shell. A container made to
// keep running runs `exec cat` with KeepStdinOpen: it blocks on a stdin
// that nothing writes to.
package enginetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
)

// Label is carried by every resource the suite creates; its value names
// the subtest (the stem of its resources' names).
const Label = naming.LabelPrefix + "enginetest"

// Options says what the engine under test has to offer. A check that
// cannot run on an engine is left out by an option documented here, and
// Run logs every check it leaves out; nothing is skipped otherwise.
type Options struct {
	// Prefix starts the name of every resource the suite creates, before
	// the subtest's name; required.
	Prefix string
	// Image is a local image whose PATH has sh and the commands of the
	// suite's scripts (see the package doc); required.
	Image string
	// ImageInfo is what InspectImage must report for Image.
	ImageInfo engine.ImageInfo
	// PullableImage is a reference PullImage must fetch. "" leaves that
	// check out, for an engine that has no registry to pull from.
	PullableImage string
	// UnpullableImage is a reference that no registry serves: PullImage
	// of it must fail. "" leaves that check out, for an engine that pulls
	// every reference (the fake does, so that unit tests need no
	// registry).
	UnpullableImage string
	// Timeout bounds each check; default 2 minutes.
	Timeout time.Duration
}

// check is one behaviour of one method.
type check struct {
	method, behaviour string
	run               func(t *testing.T, x *env)
}

// Run runs every check of the contract as a parallel subtest
// "<method>/<behaviour>", each on an engine newEngine returns for it.
func Run(t *testing.T, newEngine func(t *testing.T) engine.Engine, opts Options) {
	t.Helper()
	if opts.Prefix == "" || opts.Image == "" {
		t.Fatalf("enginetest: Options.Prefix and Options.Image are required, got %+v", opts)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	checks := slices.Concat(imageChecks(opts), volumeChecks(), containerChecks(), execChecks(),
		networkChecks(), logChecks(), listChecks(), removeChecks(), optionChecks())
	for _, c := range checks {
		if c.run == nil {
			t.Logf("not checked on this engine: %s %s", c.method, c.behaviour)
		}
	}
	methods := map[string][]check{}
	var order []string
	for _, c := range checks {
		if c.run == nil {
			continue
		}
		if _, ok := methods[c.method]; !ok {
			order = append(order, c.method)
		}
		methods[c.method] = append(methods[c.method], c)
	}
	for _, m := range order {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			for _, c := range methods[m] {
				t.Run(c.behaviour, func(t *testing.T) {
					t.Parallel()
					c.run(t, newEnv(t, newEngine(t), opts))
				})
			}
		})
	}
}

// env is one check's engine, context and names.
type env struct {
	t    *testing.T
	e    engine.Engine
	ctx  context.Context
	opts Options
	stem string // the subtest's resource names start with it
}

func newEnv(t *testing.T, e engine.Engine, opts Options) *env {
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	t.Cleanup(cancel)
	x := &env{t: t, e: e, ctx: ctx, opts: opts, stem: stem(opts.Prefix + "-" + t.Name())}
	// Registered first, so it runs last: after every resource's own
	// removal, nothing of this subtest may be left.
	t.Cleanup(x.sweep)
	return x
}

// stem turns s into a resource name every engine accepts: [a-z0-9-],
// at most 64 characters (a longer one ends with a hash of the whole).
func stem(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimRight(b.String(), "-")
	if len(out) > 64 {
		sum := sha256.Sum256([]byte(out))
		out = strings.TrimRight(out[:55], "-") + "-" + hex.EncodeToString(sum[:4])
	}
	return out
}

// name is the name of one of the subtest's resources.
func (x *env) name(suffix string) string { return x.stem + "-" + suffix }

// labels are extra plus the suite's label.
func (x *env) labels(extra map[string]string) map[string]string {
	l := maps.Clone(extra)
	if l == nil {
		l = map[string]string{}
	}
	l[Label] = x.stem
	return l
}

// cleanupContext bounds a removal at cleanup, when the check's own
// context may have ended.
func cleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

// removeAtCleanup removes r when the subtest ends.
func (x *env) removeAtCleanup(r engine.Resource) {
	x.t.Cleanup(func() {
		ctx, cancel := cleanupContext()
		defer cancel()
		if err := x.e.Remove(ctx, r); err != nil {
			x.t.Errorf("cleanup: removing %s %s: %v", r.Type, r.Name, err)
		}
	})
}

// sweep fails the subtest if anything labelled for it is left, and
// removes it: containers first, as volumes and networks in use cannot go.
func (x *env) sweep() {
	ctx, cancel := cleanupContext()
	defer cancel()
	left, err := x.e.List(ctx, map[string]string{Label: x.stem})
	if err != nil {
		x.t.Errorf("cleanup: listing what is left: %v", err)
		return
	}
	for _, typ := range []engine.ResourceType{engine.Container, engine.Volume, engine.Network} {
		for _, r := range left {
			if r.Type != typ {
				continue
			}
			x.t.Errorf("cleanup: %s %s was left behind", r.Type, r.Name)
			if r.ID != "" {
				r.Name = r.ID
			}
			if err := x.e.Remove(ctx, r); err != nil {
				x.t.Errorf("cleanup: removing %s %s: %v", r.Type, r.Name, err)
			}
		}
	}
}

// keepRunning is the script of a container that runs until removed.
const keepRunning = "exec cat"

// spec describes a container of the subtest running script.
func (x *env) spec(suffix, script string) engine.ContainerSpec {
	return engine.ContainerSpec{
		Name: x.name(suffix), Image: x.opts.Image, Labels: x.labels(nil),
		Entrypoint: []string{"sh", "-c"}, Cmd: []string{script}, KeepStdinOpen: true,
	}
}

// create creates the container, to be removed at cleanup.
func (x *env) create(c engine.ContainerSpec) string {
	x.t.Helper()
	x.removeAtCleanup(engine.Resource{Type: engine.Container, Name: c.Name})
	if err := x.e.CreateContainer(x.ctx, c); err != nil {
		x.t.Fatalf("CreateContainer(%s): %v", c.Name, err)
	}
	return c.Name
}

// start creates and starts the container.
func (x *env) start(c engine.ContainerSpec) string {
	x.t.Helper()
	x.create(c)
	if err := x.e.StartContainer(x.ctx, c.Name); err != nil {
		x.t.Fatalf("StartContainer(%s): %v", c.Name, err)
	}
	return c.Name
}

// running starts a container that keeps running.
func (x *env) running(suffix string) string {
	x.t.Helper()
	return x.start(x.spec(suffix, keepRunning))
}

// volume ensures a volume of the subtest, to be removed at cleanup.
func (x *env) volume(suffix string, labels map[string]string) string {
	x.t.Helper()
	v := engine.VolumeSpec{Name: x.name(suffix), Labels: x.labels(labels)}
	x.removeAtCleanup(engine.Resource{Type: engine.Volume, Name: v.Name})
	if err := x.e.EnsureVolume(x.ctx, v); err != nil {
		x.t.Fatalf("EnsureVolume(%s): %v", v.Name, err)
	}
	return v.Name
}

// network creates a network of the subtest, to be removed at cleanup.
func (x *env) network(suffix string, labels map[string]string) string {
	x.t.Helper()
	n := engine.NetworkSpec{Name: x.name(suffix), Labels: x.labels(labels)}
	x.removeAtCleanup(engine.Resource{Type: engine.Network, Name: n.Name})
	if err := x.e.CreateNetwork(x.ctx, n); err != nil {
		x.t.Fatalf("CreateNetwork(%s): %v", n.Name, err)
	}
	return n.Name
}

// state is the container's state; an error fails the subtest.
func (x *env) state(name string) string {
	x.t.Helper()
	s, err := x.e.ContainerState(x.ctx, name)
	if err != nil {
		x.t.Fatalf("ContainerState(%s): %v", name, err)
	}
	return s
}

// waitUntil polls cond, more and more slowly, until it holds; when the
// check's time is up it fails with what cond last said. The contract has
// no call that waits for a container, so polling is the only way to see
// one change by itself.
func (x *env) waitUntil(what string, cond func() (bool, string, error)) {
	x.t.Helper()
	last := "not asked yet"
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ok, got, err := cond()
		if err != nil {
			x.t.Fatalf("waiting until %s: %v", what, err)
		}
		if ok {
			return
		}
		last = got
		select {
		case <-x.ctx.Done():
			x.t.Fatalf("%s did not happen within %s; last seen: %s", what, x.opts.Timeout, last)
		case <-time.After(delay):
		}
	}
}

// waitExited waits until the container's process has ended by itself.
func (x *env) waitExited(name string) {
	x.t.Helper()
	x.waitUntil(name+" exited", func() (bool, string, error) {
		s, err := x.e.ContainerState(x.ctx, name)
		if err != nil {
			return false, "", err
		}
		if s != "running" && s != "exited" {
			return false, "", fmt.Errorf("state %q, want running then exited", s)
		}
		return s == "exited", s, nil
	})
}

// exec runs cmd in the container and returns what it printed.
func (x *env) exec(name string, stdin io.Reader, cmd ...string) (engine.Exit, string, string, error) {
	var stdout, stderr buffer
	exit, err := x.e.Exec(x.ctx, name, cmd, stdin, &stdout, &stderr)
	return exit, stdout.String(), stderr.String(), err
}

// wantErr fails unless err wraps target.
func wantErr(t *testing.T, call string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s = %v, want an error wrapping %q", call, err, target)
	}
}

// buffer is a bytes buffer that may be written while it is read, and
// tells when it holds a given text.
type buffer struct {
	mu      sync.Mutex
	b       strings.Builder
	want    string
	arrived chan struct{}
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Write(p)
	if b.arrived != nil && strings.Contains(b.b.String(), b.want) {
		close(b.arrived)
		b.arrived = nil
	}
	return len(p), nil
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// when returns a channel closed once the buffer holds s.
func (b *buffer) when(s string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan struct{})
	if strings.Contains(b.b.String(), s) {
		close(ch)
		return ch
	}
	b.want, b.arrived = s, ch
	return ch
}
