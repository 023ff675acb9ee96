package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
)

// errCannotProbe means a service's port cannot be tried at all: waiting
// longer would not help.
var errCannotProbe = errors.New("cannot probe services from the helper container")

// prober tries a service's port: dialled from the runner host while that
// reaches the job's network (a rootful local engine's bridge), else from
// inside the network, in the helper container. Under rootless Docker,
// Docker Desktop or a runner in a container the host cannot reach the
// containers' addresses; without the helper every service would cost the
// whole wait_timeout there. One prober serves all services of a prepare.
type prober struct {
	engine   Engine
	helper   string // the helper container, running on the job's network
	dialer   net.Dialer
	say      func(format string, args ...any)
	inHelper atomic.Bool
	switched sync.Once
}

// newProber returns the prober of one prepare. The containers of an
// engine on another host are tried from the helper from the start: this
// host's dial could reach another machine at the same address.
func newProber(d Deps, helper string) *prober {
	p := &prober{engine: d.Engine, helper: helper, dialer: net.Dialer{Timeout: time.Second}, say: d.Say}
	p.inHelper.Store(!strings.HasPrefix(d.Docker.Host, "unix://"))
	return p
}

// probe makes one connection attempt to host:port and returns nil when
// the port accepted it, else why not.
func (p *prober) probe(ctx context.Context, host string, port int) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if !p.inHelper.Load() {
		conn, err := p.dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		if ctx.Err() != nil || !unreachable(err) {
			return err
		}
		p.switched.Do(func() {
			p.inHelper.Store(true)
			p.say("The runner host cannot reach the job's network (%s: %v); trying the services from the helper container", addr, innermost(err))
		})
	}
	return p.probeInHelper(ctx, host, port)
}

// unreachable says whether a dial failed because this host cannot reach
// the address at all, rather than because nothing listens there (which
// is "connection refused").
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// probeInHelper connects with bash's /dev/tcp, which the official helper
// images have (they run the runner's bash scripts).
func (p *prober) probeInHelper(ctx context.Context, host string, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	// $0 names the shell in its messages.
	cmd := []string{"bash", "-c", `exec 3<>"/dev/tcp/$1/$2"`, "probe", host, strconv.Itoa(port)}
	exit, err := p.engine.Exec(ctx, p.helper, cmd, nil, nil, &stderr)
	switch {
	case errors.Is(err, engine.ErrNotFound) || errors.Is(err, engine.ErrNotRunning):
		return fmt.Errorf("%w: %w", errCannotProbe, err)
	case err != nil: // e.g. a slow engine: the next try may do
		return fmt.Errorf("trying from the helper container: %w", err)
	case exit.Code == 0:
		return nil
	case exit.Code == 126 || exit.Code == 127:
		return fmt.Errorf("%w: it has no bash (exit code %d)", errCannotProbe, exit.Code)
	}
	// bash says "probe: connect: Connection refused" and then names the
	// path: the first line is the reason.
	reason, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
	reason = strings.TrimPrefix(reason, "probe: connect: ")
	if reason == "" {
		reason = fmt.Sprintf("exit code %d", exit.Code)
	}
	return errors.New(strings.ToLower(reason) + " (from the helper container)")
}
