package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/parallel"
	"github.com/warmcache/warmcache/internal/protocol"
)

// serviceLogLines is how much of a service's output the job log shows
// when it does not get ready.
const serviceLogLines = 20

// jobService is one of the job's `services:`, checked against the config.
type jobService struct {
	image    job.Image
	policies []string // pull policies, already limited to the allowed ones
	aliases  []string
	// info describes the image when prepare found it present; nil after
	// a pull.
	info *engine.ImageInfo
}

// planServices checks the job's services before anything is created: the
// number the admin allows, their pull policies and aliases. Problems of
// the job's own making are build failures (a retry cannot help).
func planServices(d Deps, j job.Job) ([]jobService, error) {
	if j.ServicesEnvError != nil {
		return nil, &protocol.BuildFailure{Reason: j.ServicesEnvError.Error()}
	}
	if limit := d.Config.Services.MaxPerJob; len(j.Services) > limit {
		return nil, &protocol.BuildFailure{Reason: fmt.Sprintf("the job declares %d services; this runner allows at most %d (services.max_per_job)", len(j.Services), limit)}
	}
	var out []jobService
	for i, s := range j.Services {
		if strings.TrimSpace(s.Name) == "" {
			return nil, &protocol.BuildFailure{Reason: fmt.Sprintf("service %d has no image name", i+1)}
		}
		policies, err := pullPolicies(s.PullPolicy, d.Config)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		aliases := job.ServiceAliases(s)
		for _, a := range s.UserAliases() {
			if !slices.Contains(aliases, a) {
				d.say("WARNING: service %s: alias %q is not a valid host name and is ignored", s.Name, a)
			}
		}
		if p := s.ExecutorOpts.Docker.Platform; p != "" {
			d.say("WARNING: service %s: platform %q is ignored: the engine's own platform is used", s.Name, p)
		}
		out = append(out, jobService{image: s, policies: policies, aliases: aliases})
	}
	return out, nil
}

// jobNetwork returns the network the helper (and with it the build
// container) and the services join, and whether it is the job's own:
// the admin's network_mode if set, else a bridge network per job, so that
// service aliases resolve and two jobs using one alias never meet.
func jobNetwork(cfg config.Config, key naming.JobKey) (string, bool) {
	if cfg.Docker.NetworkMode != "" {
		return cfg.Docker.NetworkMode, false
	}
	return key.Name(naming.KindNetwork), true
}

// makeJobNetwork starts creating the job's own network, if it has one,
// and returns the network to join and a function that waits for the
// creation and gives its error.
func makeJobNetwork(ctx context.Context, d Deps, key naming.JobKey, meta naming.JobMeta) (string, func() error) {
	network, own := jobNetwork(d.Config, key)
	return network, parallel.Go(func() error {
		if !own {
			return nil
		}
		if err := d.Engine.CreateNetwork(ctx, engine.NetworkSpec{Name: network, Labels: key.Labels(naming.KindNetwork, meta)}); err != nil {
			return fmt.Errorf("creating the job's network: %w", err)
		}
		return nil
	})
}

// userDefined says whether a network mode names a user-defined network,
// the only kind where containers get aliases.
func userDefined(mode string) bool {
	switch mode {
	case "", "default", "bridge", "host", "none":
		return false
	}
	return !strings.HasPrefix(mode, "container:")
}

// serviceSpec is the container of the job's i-th service: the one place
// its settings are decided.
func serviceSpec(key naming.JobKey, i int, j job.Job, s jobService, network string, meta naming.JobMeta) engine.ContainerSpec {
	spec := engine.ContainerSpec{
		Name:        key.ServiceName(i),
		Image:       s.image.Name,
		Entrypoint:  s.image.Entrypoint,
		Cmd:         s.image.Command,
		Env:         j.ServiceEnv(s.image),
		User:        s.image.ExecutorOpts.Docker.User,
		Labels:      key.Labels(naming.KindService, meta),
		NetworkMode: network,
	}
	if userDefined(network) {
		spec.NetworkAliases = s.aliases
	}
	return spec
}

// serviceSpecs returns the service containers to start and says in the
// job log under which names each service is reachable.
func serviceSpecs(d Deps, key naming.JobKey, j job.Job, svcs []jobService, network string, meta naming.JobMeta) []engine.ContainerSpec {
	var specs []engine.ContainerSpec
	for i, s := range svcs {
		spec := serviceSpec(key, i, j, s, network, meta)
		specs = append(specs, spec)
		if len(spec.NetworkAliases) > 0 {
			d.say("Starting service %s, reachable as %s", s.image.Name, strings.Join(spec.NetworkAliases, ", "))
		} else {
			d.say("Starting service %s", s.image.Name)
		}
	}
	return specs
}

// startServices creates and starts the service containers, all at once.
func startServices(ctx context.Context, e engine.Engine, specs []engine.ContainerSpec) error {
	return parallel.Each(specs, func(s engine.ContainerSpec) error {
		if err := e.CreateContainer(ctx, s); err != nil {
			return err
		}
		return e.StartContainer(ctx, s.Name)
	})
}

// waitServices waits, all services at once and for at most
// services.wait_timeout, until every exposed TCP port of each service
// accepts a connection. A service that does not get ready is reported in
// the job log with its last lines of output, and the job goes on, as
// under the Docker executor. The ports are dialled from the driver's host
// when it reaches the job's network, else from the helper container (see
// prober).
func waitServices(ctx context.Context, d Deps, helper string, svcs []jobService, specs []engine.ContainerSpec) {
	timeout := d.Config.Services.WaitTimeout
	if len(specs) == 0 || timeout == 0 {
		return
	}
	if specs[0].NetworkMode == "none" {
		d.say("Not waiting for services: network_mode is none")
		return
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	reports := make([]string, len(specs))
	p := newProber(d, helper)
	_ = parallel.Each(indexes(len(specs)), func(i int) error {
		reports[i] = waitService(wctx, ctx, d, p, svcs[i], specs[i], timeout)
		return nil
	})
	ready := true
	for _, r := range reports {
		if r != "" {
			ready = false
			fmt.Fprint(d.Stderr, r)
		}
	}
	if ready {
		d.say("Services ready in %.1fs", time.Since(start).Seconds())
	}
}

// waitService waits for one service and returns what the job log should
// say when it did not get ready ("" when it did). wctx bounds the wait;
// ctx is for reading the service's logs afterwards.
func waitService(wctx, ctx context.Context, d Deps, p *prober, svc jobService, spec engine.ContainerSpec, timeout time.Duration) string {
	image := svc.image.Name
	info := svc.info
	if info == nil { // pulled: not described yet
		got, err := d.Engine.InspectImage(wctx, image)
		if err != nil {
			d.Log.Warn("reading a service image's ports", zap.String("image", image), zap.Error(err))
			return fmt.Sprintf("WARNING: service %s: cannot tell its ports (%v); not waiting for it\n", image, err)
		}
		info = &got
	}
	var problem string
	for _, port := range info.ExposedPorts {
		if port.Protocol != "tcp" {
			continue
		}
		if problem = waitPort(wctx, d.Engine, p, spec, port, timeout); problem != "" {
			break
		}
	}
	if problem == "" {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "WARNING: service %s is not ready: %s; the job goes on\n", image, problem)
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	logs, err := d.Engine.ContainerLogs(lctx, spec.Name, serviceLogLines)
	switch {
	case err != nil:
		fmt.Fprintf(&b, "  (its logs cannot be read: %v)\n", err)
	case strings.TrimSpace(logs) == "":
		b.WriteString("  (it wrote nothing)\n")
	default:
		fmt.Fprintf(&b, "  Last lines of its output:\n")
		for _, line := range strings.Split(strings.TrimRight(logs, "\n"), "\n") {
			fmt.Fprintf(&b, "  | %s\n", line)
		}
	}
	return b.String()
}

// waitPort tries the service's port until it accepts a connection, the
// service stops, or ctx (bounded by timeout) ends; it returns the problem,
// "" on success. The service's state is read again at most every second,
// and a try that gets no answer gives up after a second or two.
func waitPort(ctx context.Context, e engine.Engine, pr *prober, spec engine.ContainerSpec, p engine.Port, timeout time.Duration) string {
	var host string
	var checked time.Time
	lastTry := "the service has no address"
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		if host == "" || time.Since(checked) > time.Second {
			h, problem := serviceHost(ctx, e, spec)
			if problem != "" {
				return fmt.Sprintf("%s before port %s opened", problem, p)
			}
			host, checked = h, time.Now()
		}
		if host != "" {
			err := pr.probe(ctx, host, p.Number)
			if err == nil {
				return ""
			}
			if errors.Is(err, errCannotProbe) {
				return fmt.Sprintf("port %s cannot be tried: %v", p, err)
			}
			if dl, ok := ctx.Deadline(); !ok || time.Now().Before(dl) { // not cut short by the wait's end
				lastTry = innermost(err).Error()
			}
		}
		select {
		case <-ctx.Done():
			// The last answer tells a closed port (connection refused)
			// from an address this host cannot reach (a timeout).
			return fmt.Sprintf("port %s did not open within %s (last try: %s)", p, timeout, lastTry)
		case <-time.After(delay):
		}
	}
}

// serviceHost returns the address to dial a service at, "" while it has
// none yet, or the problem when it stopped.
func serviceHost(ctx context.Context, e engine.Engine, spec engine.ContainerSpec) (string, string) {
	state, err := e.ContainerState(ctx, spec.Name)
	if err != nil {
		if ctx.Err() != nil {
			return "", ""
		}
		return "", fmt.Sprintf("cannot inspect it: %v", err)
	}
	if state != "running" {
		return "", fmt.Sprintf("it stopped (%s)", state)
	}
	network := spec.NetworkMode
	switch network {
	case "host":
		return "127.0.0.1", ""
	case "", "default":
		network = "bridge"
	}
	ip, err := e.ContainerIP(ctx, spec.Name, network)
	if err != nil && ctx.Err() == nil {
		return "", fmt.Sprintf("cannot inspect it: %v", err)
	}
	return ip, ""
}

// innermost is the error at the end of err's chain, e.g. the system's
// "connection refused" under a dial error.
func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// networksLater is cleanup's remover: it hands the removal of a network,
// by then free of the job's containers, to a detached process, because
// that removal takes longer than anything else in cleanup and nothing
// needs to wait for it. If that process cannot start, the network is
// removed at once; if it fails, the reaper removes the network later.
type networksLater struct {
	remover
	d Deps
}

// cleanupRemover returns what cleanup removes the job's resources with.
func cleanupRemover(d Deps) remover {
	if d.Background == nil {
		return d.Engine
	}
	return networksLater{remover: d.Engine, d: d}
}

// Remove implements remover.
func (n networksLater) Remove(ctx context.Context, r engine.Resource) error {
	if r.Type == engine.Network && r.ID != "" {
		// By id: a retried prepare of the job makes one of the same name.
		err := n.d.Background("remove-network", "--host", n.d.Config.Docker.Host, r.ID)
		if err == nil {
			return nil
		}
		n.d.Log.Warn("removing the job's network in the background", zap.Error(err))
	}
	return n.remover.Remove(ctx, r)
}
