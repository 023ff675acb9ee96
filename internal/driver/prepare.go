package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/images"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/parallel"
	"github.com/warmcache/warmcache/internal/plan"
	"github.com/warmcache/warmcache/internal/protocol"
	"github.com/warmcache/warmcache/internal/reap"
	"github.com/warmcache/warmcache/internal/services"
)

// Prepare pulls the images, makes the job's network, starts its services
// and its helper and build containers, which then live until cleanup
// (each run stage execs its script in one of them), and waits for the
// services' ports.
//
// Image entrypoints: each container starts once with its image entrypoint
// (or the job's image:entrypoint) and the stage agent (package agent), or
// a keep-alive shell without one, as its command, so an entrypoint that
// sets things up and then execs its arguments works as under the Docker
// executor; what it exports reaches the stage scripts through the agent
// (not through exec, the fallback).
func Prepare(ctx context.Context, d Deps) (err error) {
	defer func() { err = explainFullDisk(d, err) }()
	start := time.Now()
	j, err := job.Load(d.Getenv)
	if err != nil {
		return err
	}
	d, flushLog := masked(d, j)
	defer flushLog(&err)
	key := j.Key()
	d.Log.Info("prepare", zap.String("job", key.Base()), zap.Int64("project_id", j.ProjectID))
	if err := checkVolumeTargets(d.Config); err != nil {
		return err
	}
	secOpts, err := securityOpts("docker.security_opt", d.Config.Docker.SecurityOpt)
	if err != nil {
		return err
	}
	svcSecOpts, err := securityOpts("docker.services_security_opt", d.Config.Docker.ServicesSecurityOpt)
	if err != nil {
		return err
	}

	image := images.Build(j, d.Config, d.Getenv)
	if j, err = checkRules(d, j, image); err != nil {
		return err
	}
	helper, err := images.Helper(j, d.Config)
	if err != nil {
		return err
	}
	policies, err := images.PullPolicies(j.Image.PullPolicy, d.Config)
	if err != nil {
		return err
	}
	d.say("Preparing job %d of %s on warmcache (image %s)", j.ID, j.ProjectPath, image)
	limitsPlan, err := jobLimits(d, j)
	if err != nil {
		return err
	}
	cgroupDriver := askDriver(ctx, d)
	defer cgroupDriver() // never left in flight on an early return
	svcs, err := planServices(d, j)
	if err != nil {
		return err
	}
	if p := j.Image.ExecutorOpts.Docker.Platform; p != "" {
		d.say("WARNING: image platform %q is ignored: the engine's own platform is used", p)
	}

	// A leftover of an earlier attempt whose cleanup failed would make
	// every create below conflict.
	if err := reap.RemoveJob(ctx, d.Engine, key); err != nil {
		return fmt.Errorf("removing leftovers of an earlier attempt: %w", err)
	}
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		defer func() {
			if p := recover(); p != nil { // the reaper never fails a job
				d.Log.Error("reaper pass panicked", zap.Any("panic", p))
			}
		}()
		removed, ok := reap.AtPrepare(ctx, reap.Deps{Engine: d.Engine, Config: d.Config.Reap, Cgroups: d.cgroups(),
			SlotNetworkOptions: plan.SlotNetworkOptions(d.Config)}, d.Log)
		d.Caches.RecordReap(removed, ok)
		d.Caches.GCAtStage(ctx, d.Caches.Names(j))
	}()
	defer func() { <-reaped }()

	meta := j.Meta(time.Now())
	// The job's network is made ready while the images and volumes are
	// checked: it is needed only when the containers are planned.
	nets := services.Networks{Own: plan.Network(key, d.Config, meta)}
	if !d.Config.Docker.NetworkPerJob {
		slot := plan.SlotNetwork(j, d.Config, meta.Created)
		nets.Slot = &slot
	}
	net := services.MakeNetwork(ctx, serviceDeps(d), nets)
	defer net.Ready() // a failed prepare leaves no call in flight

	pull := images.Puller{Engine: d.Engine, Attempts: d.Config.Docker.PullAttempts, Say: d.say,
		Auth: images.RegistryAuth(images.SourcesFor(j, d.Config, d.Getenv), d.say), Backoff: images.JitteredBackoff}
	phases := []zap.Field{zap.Duration("leftovers", time.Since(start))}
	pullStart := time.Now()
	imageInfo, err := pull.Ensure(ctx, image, policies)
	if err != nil {
		return err
	}
	if helper != image {
		helperPolicies := config.Intersect(d.Config.Docker.PullPolicy, d.Config.Docker.AllowedPullPolicies)
		if _, err := pull.Ensure(ctx, helper, helperPolicies); err != nil {
			return fmt.Errorf("helper image: %w", err)
		}
	}
	for i, s := range svcs {
		if svcs[i].Info, err = pull.Ensure(ctx, s.Image.Name, s.Policies); err != nil {
			return fmt.Errorf("service image: %w", err)
		}
	}

	user := j.Image.ExecutorOpts.Docker.User
	if user == "" {
		if imageInfo == nil { // pulled: not described yet
			info, err := d.Engine.InspectImage(ctx, image)
			if err != nil {
				return err
			}
			imageInfo = &info
		}
		user = imageInfo.User
	}
	pullTime := time.Since(pullStart)
	caches, err := d.Caches.Claim(ctx, j, plan.NonRoot(user), protocol.CacheDir, d.say)
	if err != nil {
		return err
	}
	if _, warm := caches.Checkout(); !warm {
		// The job's own builds volume, removed at cleanup.
		builds := key.Name(naming.KindBuilds)
		if err := d.Engine.EnsureVolume(ctx, engine.VolumeSpec{Name: builds, Labels: key.Labels(naming.KindBuilds, meta)}); err != nil {
			return err
		}
		if plan.NonRoot(user) && d.Host != nil {
			if err := d.Host.OpenToAllUsers(ctx, builds); err != nil && !errors.Is(err, host.ErrNotLocal) {
				return fmt.Errorf("opening volume %s to the job's user: %w", builds, err)
			}
		}
	}
	phases = append(phases, zap.Duration("images_volume", time.Since(start)))
	netenv, err := planNetEnv(ctx, d, j, meta)
	if err != nil {
		return err
	}
	network, err := net.Name()
	if err != nil {
		return err
	}
	services.Announce(serviceDeps(d), svcs, services.ContainerSpecs(key, j, svcs, network, meta))
	parent, err := setUpCgroup(d, key, limitsPlan, cgroupDriver)
	if err != nil {
		return err
	}
	p := plan.Make(j, d.Config, plan.Facts{
		Image: image, Helper: helper, User: user, Network: network, Services: svcs,
		Caches: caches, Env: netenv.plan.Env, Secrets: netenv.mount, Limits: limitsPlan, CgroupParent: parent, Meta: meta,
		SecurityOpt: secOpts, ServicesSecurityOpt: svcSecOpts, Agent: d.Agent,
	})
	helperSpec, build, serviceSpecs := p.Helper, p.Build, p.Services
	for _, note := range p.Notes {
		d.say("%s", note)
	}
	defer func() {
		err = explainPrivileged(err, func(name string) string {
			if i := slices.IndexFunc(serviceSpecs, func(s engine.ContainerSpec) bool { return s.Name == name }); i >= 0 {
				return "service " + svcs[i].Image.Name
			}
			if name == build.Name {
				return "the build container"
			}
			return name
		})
	}()
	for _, v := range p.Volumes {
		if err := d.Engine.EnsureVolume(ctx, v); err != nil {
			return err
		}
	}
	phases = append(phases, zap.Duration("caches", time.Since(start)))
	// The services start beside the job's own containers, once the
	// network is the job's alone (the build container joins the helper's
	// network namespace).
	servicesStarted := parallel.Go(func() error {
		if err := net.Ready(); err != nil {
			return err
		}
		return services.Start(ctx, d.Engine, serviceSpecs)
	})
	defer servicesStarted()
	if err := parallel.Each([]engine.ContainerSpec{helperSpec, build}, func(s engine.ContainerSpec) error {
		return d.Engine.CreateContainer(ctx, s)
	}); err != nil {
		return err
	}
	if err := d.Caches.Verify(ctx, caches, func(ctx context.Context) error { return reap.RemoveJob(ctx, d.Engine, key) }); err != nil {
		return err
	}
	if err := net.Ready(); err != nil {
		return err
	}
	// A build container with nothing to wait for (services start before
	// it, as under the Docker executor; a privileged or non-root one starts
	// in prepare) is handed to its starter now, which starts it the moment
	// the helper runs: the starter's own start-up overlaps the helper's.
	startNow := plan.NonRoot(user) || build.Privileged
	early := d.Detached != nil && len(serviceSpecs) == 0 && !startNow
	if early {
		if err := d.Detached.StartContainer(build.Name, helperSpec.Name); err != nil {
			d.Log.Warn("starting the build container in the background", zap.Error(err))
			early, startNow = false, true // the starter cannot start: no second try
		}
	}
	if err := d.Engine.StartContainer(ctx, helperSpec.Name); err != nil {
		return err
	}
	// The services are started before the build container, as under the
	// Docker executor.
	if err := servicesStarted(); err != nil {
		return err
	}
	if nets.Slot != nil && network == nets.Slot.Name {
		if err := services.CheckAlone(ctx, serviceDeps(d), network, key.Base()); err != nil {
			return err
		}
	}
	// The first stages (prepare_script, get_sources, caches, artifacts) run
	// in the helper: the build container starts meanwhile, in the
	// background, and the run stage finishes the job if it is not done.
	// A privileged build container starts now, so that an engine that
	// refuses it fails prepare with its reason.
	if !early {
		if err := startBuild(ctx, d, build.Name, startNow); err != nil {
			return err
		}
	}
	if plan.NonRoot(user) {
		// The runner's scripts hand /builds to the owner of this file after
		// fetching sources, as under the Docker executor; creating it as the
		// job's user gives it that user's uid and gid.
		exit, err := d.Engine.Exec(ctx, key.Name(naming.KindBuild), []string{"sh", "-c", ": > " + protocol.BuildsDir + "/.gitlab-build-uid-gid"}, nil, d.Stderr, d.Stderr)
		if err == nil && exit.Code != 0 {
			err = fmt.Errorf("exit code %d", exit.Code)
		}
		if err != nil {
			return fmt.Errorf("marking %s for user %s: %w", protocol.BuildsDir, user, err)
		}
	}
	if len(netenv.plan.Files) > 0 {
		// A root job's files are root's: written straight into the tmpfs
		// the started helper holds mounted, or by the helper, so its build
		// container can go on starting in the background; another user
		// writes its own, to own them.
		delivered := false
		if !plan.NonRoot(user) {
			if delivered, err = writeIntoTmpfs(ctx, d.Host, netenv.mount.Volume, netenv.plan.Files); err != nil {
				return err
			}
		}
		target := helperSpec.Name
		if plan.NonRoot(user) {
			target = build.Name
		}
		if !delivered {
			if err := deliverCredentials(ctx, d.Engine, target, netenv.plan.Files); err != nil {
				return err
			}
		}
		d.Log.Debug("credentials delivered", zap.Bool("straight_into_tmpfs", delivered))
	}
	phases = append(phases, zap.Duration("containers", time.Since(start)))
	// The helper's agent comes up while the runner starts the first stage,
	// which waits for it (see agent.Engine).
	services.Wait(ctx, serviceDeps(d), helperSpec.Name, svcs, serviceSpecs)
	d.Log.Debug("prepare timings (since start)", append(phases, zap.Duration("services", time.Since(start)))...)
	d.say("Job containers ready in %.1fs", time.Since(start).Seconds())
	d.Caches.RecordMetrics(func(s *record.MetricsState) {
		s.Observe(record.StagePrepare, time.Since(start))
		s.Observe(record.StagePull, pullTime)
	})
	return nil
}

// startBuild starts the build container in the background when the entry
// point can, else now. A job whose user is not root needs it at once: the
// builds directory is marked for that user from inside it.
func startBuild(ctx context.Context, d Deps, name string, now bool) error {
	if d.Detached != nil && !now {
		err := d.Detached.StartContainer(name, "")
		if err == nil {
			return nil
		}
		d.Log.Warn("starting the build container in the background", zap.Error(err))
	}
	return d.Engine.StartContainer(ctx, name)
}
