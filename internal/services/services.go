// Package services runs a job's `services:`: it checks them against the
// config, makes the job's network, starts the service containers and
// waits for their ports. Prepare calls it in that order.
package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/images"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/parallel"
)

// serviceLogLines is how much of a service's output the job log shows
// when it does not get ready.
const serviceLogLines = 20

// Engine is what the services need from the container engine (see
// engine.Engine for each method's contract).
type Engine interface {
	CreateNetwork(ctx context.Context, n engine.NetworkSpec) error
	InspectNetwork(ctx context.Context, name string) (engine.NetworkInfo, error)
	DisconnectNetwork(ctx context.Context, network, container string) error
	CreateContainer(ctx context.Context, c engine.ContainerSpec) error
	StartContainer(ctx context.Context, name string) error
	InspectImage(ctx context.Context, ref string) (engine.ImageInfo, error)
	ContainerState(ctx context.Context, name string) (string, error)
	ContainerIP(ctx context.Context, name, network string) (string, error)
	ContainerLogs(ctx context.Context, name string, lines int) (string, error)
	// Exec tries a port from the helper container (see prober).
	Exec(ctx context.Context, name string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (engine.Exit, error)
}

// Deps is what the services of one job are handled with.
type Deps struct {
	Engine Engine
	// Docker gives the network mode (the services' network) and the
	// engine's address (whether its containers are on this host).
	Docker config.Docker
	// Services gives the number of services a job may have and how long
	// to wait for their ports.
	Services config.Services
	// Say writes one line to the job log.
	Say func(format string, args ...any)
	Log *zap.Logger
}

// Service is one of the job's `services:`, checked against the config.
type Service struct {
	Image    job.Image
	Policies []string // pull policies, already limited to the allowed ones
	Aliases  []string
	// Info describes the image when prepare found it present; nil after
	// a pull.
	Info *engine.ImageInfo
	// WaitPorts are the ports the readiness wait tries (see waitPorts);
	// nil: the image's EXPOSEd TCP ports.
	WaitPorts []engine.Port
}

// Refusal is a problem of the job's own making with its services: the
// job fails, and a retry cannot help.
type Refusal struct {
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// Plan checks the job's services before anything is created: the
// number the admin allows, their images (docker.allowed_services), pull
// policies and aliases. The admin's own services (docker.services) come
// first, always allowed, as under the Docker executor. pullPolicies
// limits a service's own pull policies to the allowed ones; its error is
// returned, wrapped. Problems of the job's own making are Refusals.
func Plan(d Deps, j job.Job, pullPolicies func(jobPolicies []string) ([]string, error)) ([]Service, error) {
	if j.ServicesEnvError != nil {
		return nil, &Refusal{Reason: j.ServicesEnvError.Error()}
	}
	rules := d.Docker.Rules
	admin := adminImages(rules.Services, j)
	all := append(slices.Clip(admin), j.Services...)
	if limit := d.Services.MaxPerJob; len(all) > limit {
		if len(admin) > 0 {
			return nil, &Refusal{Reason: fmt.Sprintf("the job declares %d services and the runner adds %d (docker.services); this runner allows at most %d (services.max_per_job)", len(j.Services), len(admin), limit)}
		}
		return nil, &Refusal{Reason: fmt.Sprintf("the job declares %d services; this runner allows at most %d (services.max_per_job)", len(j.Services), limit)}
	}
	var out []Service
	for i, s := range all {
		if strings.TrimSpace(s.Name) == "" {
			if i < len(admin) {
				return nil, fmt.Errorf("docker.services[%d]: its name is empty once the job's variables are expanded", i)
			}
			return nil, &Refusal{Reason: fmt.Sprintf("service %d has no image name", i-len(admin)+1)}
		}
		if i >= len(admin) && !slices.ContainsFunc(admin, func(a job.Image) bool { return a.Name == s.Name }) &&
			!images.Allowed(s.Name, rules.AllowedServices) {
			return nil, &Refusal{Reason: images.NotAllowed("service", s.Name, "docker.allowed_services", rules.AllowedServices)}
		}
		if rules.DisableEntrypointOverwrite && len(s.Entrypoint) > 0 {
			d.Say("WARNING: service %s: entrypoint %q is ignored: docker.disable_entrypoint_overwrite is set", s.Name, s.Entrypoint)
			s.Entrypoint = nil
		}
		ports, err := waitPorts(j.ServiceEnv(s), s.Ports)
		if err != nil {
			return nil, &Refusal{Reason: fmt.Sprintf("service %s: %v", s.Name, err)}
		}
		policies, err := pullPolicies(s.PullPolicy)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		aliases := job.ServiceAliases(s)
		for _, a := range s.UserAliases() {
			if !slices.Contains(aliases, a) {
				d.Say("WARNING: service %s: alias %q is not a valid host name and is ignored", s.Name, a)
			}
		}
		if p := s.ExecutorOpts.Docker.Platform; p != "" {
			d.Say("WARNING: service %s: platform %q is ignored: the engine's own platform is used", s.Name, p)
		}
		out = append(out, Service{Image: s, Policies: policies, Aliases: aliases, WaitPorts: ports})
	}
	return out, nil
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
func serviceSpec(key naming.JobKey, i int, j job.Job, s Service, network string, meta naming.JobMeta) engine.ContainerSpec {
	spec := engine.ContainerSpec{
		Name:        key.ServiceName(i),
		Image:       s.Image.Name,
		Entrypoint:  s.Image.Entrypoint,
		Cmd:         s.Image.Command,
		Env:         j.ServiceEnv(s.Image),
		User:        s.Image.ExecutorOpts.Docker.User,
		Labels:      key.Labels(naming.KindService, meta),
		NetworkMode: network,
	}
	if userDefined(network) {
		spec.NetworkAliases = s.Aliases
	}
	return spec
}

// Specs returns the service containers to start and says in the
// job log under which names each service is reachable.
func Specs(d Deps, key naming.JobKey, j job.Job, svcs []Service, network string, meta naming.JobMeta) []engine.ContainerSpec {
	specs := ContainerSpecs(key, j, svcs, network, meta)
	Announce(d, svcs, specs)
	return specs
}

// ContainerSpecs are the service containers of the job on network: a
// pure function of the job and its planned services.
func ContainerSpecs(key naming.JobKey, j job.Job, svcs []Service, network string, meta naming.JobMeta) []engine.ContainerSpec {
	var specs []engine.ContainerSpec
	for i, s := range svcs {
		specs = append(specs, serviceSpec(key, i, j, s, network, meta))
	}
	return specs
}

// Announce says in the job log which services start, and under which
// names each is reachable.
func Announce(d Deps, svcs []Service, specs []engine.ContainerSpec) {
	for i, spec := range specs {
		if len(spec.NetworkAliases) > 0 {
			d.Say("Starting service %s, reachable as %s", svcs[i].Image.Name, strings.Join(spec.NetworkAliases, ", "))
		} else {
			d.Say("Starting service %s", svcs[i].Image.Name)
		}
	}
}

// Start creates and starts the service containers, all at once.
func Start(ctx context.Context, e Engine, specs []engine.ContainerSpec) error {
	return parallel.Each(specs, func(s engine.ContainerSpec) error {
		if err := e.CreateContainer(ctx, s); err != nil {
			return err
		}
		return e.StartContainer(ctx, s.Name)
	})
}

// Wait waits, all services at once and for at most
// services.wait_timeout, until the ports of each service (see waitPorts)
// accept a connection. A service that does not get ready is reported in
// the job log with its last lines of output, and the job goes on, as
// under the Docker executor. The ports are dialled from the driver's host
// when it reaches the job's network, else from the helper container (see
// prober).
func Wait(ctx context.Context, d Deps, helper string, svcs []Service, specs []engine.ContainerSpec) {
	timeout := d.Services.WaitTimeout
	if len(specs) == 0 || timeout == 0 {
		return
	}
	if specs[0].NetworkMode == "none" {
		d.Say("Not waiting for services: network_mode is none")
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
			d.Say("%s", strings.TrimSuffix(r, "\n"))
		}
	}
	if ready {
		d.Say("Services ready in %.1fs", time.Since(start).Seconds())
	}
}

// waitService waits for one service and returns what the job log should
// say when it did not get ready ("" when it did). wctx bounds the wait;
// ctx is for reading the service's logs afterwards.
func waitService(wctx, ctx context.Context, d Deps, p *prober, svc Service, spec engine.ContainerSpec, timeout time.Duration) string {
	image := svc.Image.Name
	ports := svc.WaitPorts
	if ports == nil {
		info := svc.Info
		if info == nil { // pulled: not described yet
			got, err := d.Engine.InspectImage(wctx, image)
			if err != nil {
				d.Log.Warn("reading a service image's ports", zap.String("image", image), zap.Error(err))
				return fmt.Sprintf("WARNING: service %s: cannot tell its ports (%v); not waiting for it\n", image, err)
			}
			info = &got
		}
		ports = exposedTCP(info.ExposedPorts)
	}
	var problem string
	for _, port := range ports {
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
func waitPort(ctx context.Context, e Engine, pr *prober, spec engine.ContainerSpec, p engine.Port, timeout time.Duration) string {
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
func serviceHost(ctx context.Context, e Engine, spec engine.ContainerSpec) (string, string) {
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
