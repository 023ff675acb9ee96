package driver

import (
	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/limits"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
	"github.com/warmcache/warmcache/internal/services"
)

// facts are what prepare has found out, and made sure of, by the time it
// decides the job's containers: the images, the user the build runs as,
// the network to join, the caches claimed, the credentials planned, the
// limits granted and the cgroup made.
type facts struct {
	Image, Helper string
	// User is the build container's user: the job's, else its image's.
	User string
	// Network is what the helper and the services join: the job's own
	// network, or the admin's network_mode.
	Network  string
	Services []services.Service
	Caches   cache.JobCaches
	NetEnv   jobNetEnv
	Limits   limits.Plan
	// CgroupParent is the job's cgroup, "" when it has none.
	CgroupParent string
	Meta         naming.JobMeta
}

// jobPlan is every container prepare creates for a job, with every
// option: plan decides it, a pure function of the job, the config and
// the facts, and Prepare carries it out. A new container option is a
// field of engine.ContainerSpec and a line here.
type jobPlan struct {
	Helper   engine.ContainerSpec
	Build    engine.ContainerSpec
	Services []engine.ContainerSpec
	// NonRoot says the build runs as a user other than root: its
	// credentials are delivered, and the builds directory marked, as
	// that user.
	NonRoot bool
}

// plan decides the job's containers. The build container gets the builds
// volume (the warm git checkout when the job has one), the credentials'
// tmpfs and every cache; the helper (which runs git, the cache and
// artifact stages) gets the builds volume, the credentials and cache_dir;
// each is limited as the plan of limits says, under the job's cgroup.
func plan(j job.Job, cfg config.Config, f facts) jobPlan {
	key := j.Key()
	builds, ok := f.Caches.Checkout()
	if !ok {
		builds = engine.Mount{Volume: key.Name(naming.KindBuilds), Target: protocol.BuildsDir}
	}
	buildMounts := []engine.Mount{builds}
	helperMounts := []engine.Mount{builds}
	if f.NetEnv.mount != nil {
		buildMounts = append(buildMounts, *f.NetEnv.mount)
		helperMounts = append(helperMounts, *f.NetEnv.mount)
	}
	for _, c := range f.Caches.Mounts {
		if c.Target == protocol.BuildsDir {
			continue // mounted first, in both
		}
		buildMounts = append(buildMounts, c)
		if c.Target == protocol.CacheDir {
			helperMounts = append(helperMounts, c)
		}
	}
	helper := engine.ContainerSpec{
		Name: key.Name(naming.KindHelper), Image: f.Helper, Cmd: keepAlive,
		Labels: key.Labels(naming.KindHelper, f.Meta), Mounts: helperMounts, Env: f.NetEnv.plan.Env,
		NetworkMode: f.Network, KeepStdinOpen: true,
	}
	build := engine.ContainerSpec{
		Name: key.Name(naming.KindBuild), Image: f.Image, Cmd: keepAlive,
		Entrypoint: j.Image.Entrypoint, Labels: f.Caches.Labels(key.Labels(naming.KindBuild, f.Meta)),
		User: j.Image.ExecutorOpts.Docker.User, Env: withEnv(f.Caches.Env, f.NetEnv.plan.Env), Mounts: buildMounts,
		NetworkMode: buildNetwork(cfg.Docker.NetworkMode, helper.Name), KeepStdinOpen: true,
	}
	p := jobPlan{
		Helper:   withLimits(helper, f.Limits.Helper, f.CgroupParent),
		Build:    withLimits(build, withinJob(f.Limits.Build, f.Limits.Job), f.CgroupParent),
		Services: services.ContainerSpecs(key, j, f.Services, f.Network, f.Meta),
		NonRoot:  nonRoot(f.User),
	}
	for i := range p.Services {
		p.Services[i] = withLimits(p.Services[i], f.Limits.Services, f.CgroupParent)
	}
	return p
}
