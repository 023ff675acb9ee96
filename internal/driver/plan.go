package driver

import (
	"maps"
	"slices"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/images"
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
	// SecurityOpt and ServicesSecurityOpt are docker.security_opt and
	// docker.services_security_opt with each seccomp profile named by
	// its file read into the option (see securityOpts).
	SecurityOpt, ServicesSecurityOpt []string
}

// jobPlan is every container prepare creates for a job, with every
// option: plan decides it, a pure function of the job, the config and
// the facts, and Prepare carries it out. A new container option is a
// field of engine.ContainerSpec and a line here.
type jobPlan struct {
	Helper   engine.ContainerSpec
	Build    engine.ContainerSpec
	Services []engine.ContainerSpec
	// Volumes are the job's own volumes that docker.volumes asks for
	// ("/dst"): made before the containers, removed at cleanup.
	Volumes []engine.VolumeSpec `json:",omitempty"`
	// NonRoot says the build runs as a user other than root: its
	// credentials are delivered, and the builds directory marked, as
	// that user.
	NonRoot bool
	// Notes are job-log lines about what the plan decided (a container
	// that runs unprivileged although the config asks for privileged).
	Notes []string `json:",omitempty"`
}

// plan decides the job's containers. The build container gets the builds
// volume (the warm git checkout when the job has one), the credentials'
// tmpfs and every cache; the helper (which runs git, the cache and
// artifact stages) gets the builds volume, the credentials and cache_dir;
// each is limited as the plan of limits says, under the job's cgroup, and
// gets the runner's container options as the Docker executor gives them
// (see withOptions).
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
	vols := userVolumes(key, cfg.Docker.ContainerOptions, f.Meta)
	p := jobPlan{
		Helper:   withLimits(helperOptions(helper, cfg.Docker.ContainerOptions, f, vols), f.Limits.Helper, f.CgroupParent),
		Build:    withLimits(buildOptions(build, cfg, f, vols), withinJob(f.Limits.Build, f.Limits.Job), f.CgroupParent),
		Services: services.ContainerSpecs(key, j, f.Services, f.Network, f.Meta),
		Volumes:  vols.specs,
		NonRoot:  nonRoot(f.User),
	}
	if _, note := privilegedBuild(cfg, f); note != "" {
		p.Notes = append(p.Notes, note)
	}
	for i := range p.Services {
		p.Services[i] = withLimits(serviceOptions(p.Services[i], cfg, f, f.Services[i], vols), f.Limits.Services, f.CgroupParent)
		if _, note := privilegedService(cfg, f.Services[i]); note != "" {
			p.Notes = append(p.Notes, note)
		}
	}
	return p
}

// networkPlan is the job's own network (when the admin's network_mode
// names none): a bridge with docker.network_mtu and docker.enable_ipv6,
// as the Docker executor's per-build network.
func networkPlan(key naming.JobKey, cfg config.Config, meta naming.JobMeta) engine.NetworkSpec {
	return engine.NetworkSpec{
		Name: key.Name(naming.KindNetwork), Labels: key.Labels(naming.KindNetwork, meta),
		MTU: cfg.Docker.NetworkMTU, EnableIPv6: cfg.Docker.EnableIPv6,
	}
}

// Which container gets which of the runner's options follows the Docker
// executor. Its build and helper ("predefined") containers share one host
// config, its services get a smaller one of their own:
//
//   - build container: all of them.
//   - helper: the same, except privileged (it runs only the runner's own
//     steps and holds the job's credentials: nothing it does needs it).
//     Volumes, tmpfs and the rest do reach it: a CA bundle or a git
//     mirror bound from the host serves get_sources, which runs there.
//   - services: privileged as services_privileged (else privileged),
//     services_security_opt, services_devices (by image), services_tmpfs,
//     volumes, runtime, userns_mode, dns, dns_search and extra_hosts.
//
// dns, dns_search, extra_hosts and mac_address belong to a network stack:
// the build container lives in the helper's, so they are the helper's
// (the build container sees its /etc/resolv.conf and /etc/hosts), and the
// build container's own only on the host network.

// privilegedBuild says whether the job's build container runs privileged:
// when docker.privileged asks for it and its image is in
// docker.allowed_privileged_images (empty: every image), as the Docker
// executor decides. note is the job-log line when the list says no.
// The one place that decides it: allow-lists gate it here.
func privilegedBuild(cfg config.Config, f facts) (privileged bool, note string) {
	return images.Privileged(cfg.Docker.Privileged, "image", f.Image, "docker.allowed_privileged_images", cfg.Docker.AllowedPrivilegedImages)
}

// privilegedService says whether a service of that image runs privileged:
// docker.services_privileged (unset: docker.privileged), gated by
// docker.allowed_privileged_services.
func privilegedService(cfg config.Config, svc services.Service) (privileged bool, note string) {
	return images.Privileged(cfg.Docker.ServicesArePrivileged(), "service", svc.Image.Name, "docker.allowed_privileged_services", cfg.Docker.AllowedPrivilegedServices)
}

// buildOptions gives the build container the runner's options.
func buildOptions(s engine.ContainerSpec, cfg config.Config, f facts, v volumes) engine.ContainerSpec {
	o := cfg.Docker.ContainerOptions
	s = withHostOptions(s, o, f, v)
	s.Privileged, _ = privilegedBuild(cfg, f)
	if !sharesNetwork(s.NetworkMode) {
		s.DNS, s.DNSSearch, s.ExtraHosts = o.DNS, o.DNSSearch, o.ExtraHosts
	}
	return s
}

// helperOptions gives the helper the runner's options, its network
// stack's included.
func helperOptions(s engine.ContainerSpec, o config.ContainerOptions, f facts, v volumes) engine.ContainerSpec {
	s = withHostOptions(s, o, f, v)
	if !sharesNetwork(s.NetworkMode) {
		s.DNS, s.DNSSearch, s.ExtraHosts = o.DNS, o.DNSSearch, o.ExtraHosts
		if s.NetworkMode != "host" {
			s.MacAddress = o.MacAddress
		}
	}
	return s
}

// withHostOptions sets what the Docker executor's build and helper
// containers share.
func withHostOptions(s engine.ContainerSpec, o config.ContainerOptions, f facts, v volumes) engine.ContainerSpec {
	s.CapAdd, s.CapDrop, s.SecurityOpt = o.CapAdd, o.CapDrop, f.SecurityOpt
	s.Devices = devices(o.Devices)
	s.DeviceCgroupRules = o.DeviceCgroupRules
	s.GPUs = gpus(o.Gpus)
	s.Runtime, s.GroupAdd, s.UsernsMode = o.Runtime, o.GroupAdd, o.UsernsMode
	s.Sysctls = o.Sysctls
	s.Ulimits = ulimits(o.Ulimit)
	s.OomKillDisable, s.OomScoreAdj = o.OomKillDisable, o.OomScoreAdjust
	s.Tmpfs = o.Tmpfs
	return v.mount(s, o.VolumeDriver)
}

// serviceOptions gives a service the runner's options for services.
func serviceOptions(s engine.ContainerSpec, cfg config.Config, f facts, svc services.Service, v volumes) engine.ContainerSpec {
	o := cfg.Docker.ContainerOptions
	s.Privileged, _ = privilegedService(cfg, svc)
	s.SecurityOpt = f.ServicesSecurityOpt
	s.Devices = serviceDevices(o.ServicesDevices, svc.Image.Name)
	s.Runtime, s.UsernsMode = o.Runtime, o.UsernsMode
	s.Tmpfs = o.ServicesTmpfs
	if !sharesNetwork(s.NetworkMode) {
		s.DNS, s.DNSSearch, s.ExtraHosts = o.DNS, o.DNSSearch, o.ExtraHosts
	}
	return v.mount(s, o.VolumeDriver)
}

// sharesNetwork says whether a container lives in another's network stack.
func sharesNetwork(mode string) bool { return strings.HasPrefix(mode, "container:") }

// volumes are docker.volumes, planned: host paths and named volumes are
// bound, each "/dst" is a volume of the job's own.
type volumes struct {
	binds  []engine.Bind
	mounts []engine.Mount
	specs  []engine.VolumeSpec
}

// userVolumes plans docker.volumes (checked when the config was loaded).
func userVolumes(key naming.JobKey, o config.ContainerOptions, meta naming.JobMeta) volumes {
	var v volumes
	for _, spec := range o.Volumes {
		vol, err := config.ParseVolume(spec)
		if err != nil {
			continue
		}
		if vol.IsAnonymous() {
			name := key.IndexedName(naming.KindVolume, len(v.specs))
			v.specs = append(v.specs, engine.VolumeSpec{Name: name, Labels: key.Labels(naming.KindVolume, meta), Driver: o.VolumeDriver})
			v.mounts = append(v.mounts, engine.Mount{Volume: name, Target: vol.Destination, ReadOnly: vol.ReadOnly()})
			continue
		}
		b := engine.Bind{Source: vol.Source, Target: vol.Destination, ReadOnly: vol.ReadOnly()}
		for _, opt := range []string{vol.Label, vol.Propagation} {
			if opt != "" {
				b.Options = append(b.Options, opt)
			}
		}
		v.binds = append(v.binds, b)
	}
	return v
}

// mount adds the volumes to a container.
func (v volumes) mount(s engine.ContainerSpec, driver string) engine.ContainerSpec {
	if len(v.binds)+len(v.mounts) == 0 {
		return s
	}
	s.Mounts = append(slices.Clip(s.Mounts), v.mounts...)
	s.Binds = v.binds
	if len(v.binds) > 0 {
		s.VolumeDriver = driver
	}
	return s
}

func devices(list []string) []engine.Device {
	var out []engine.Device
	for _, d := range list {
		if p, err := config.ParseDevice(d); err == nil {
			out = append(out, engine.Device{Host: p.Host, Container: p.Container, Permissions: p.Permissions})
		}
	}
	return out
}

// serviceDevices are the devices of the services_devices entries whose
// image glob matches image, as the Docker executor matches them.
func serviceDevices(m map[string][]string, image string) []engine.Device {
	var out []engine.Device
	for _, glob := range slices.Sorted(maps.Keys(m)) {
		if ok, err := doublestar.Match(glob, image); err == nil && ok {
			out = append(out, devices(m[glob])...)
		}
	}
	return out
}

func gpus(s string) *engine.GPURequest {
	g, err := config.ParseGpus(s)
	if err != nil || g == nil {
		return nil
	}
	return &engine.GPURequest{Count: g.Count, Driver: g.Driver, DeviceIDs: g.DeviceIDs, Capabilities: g.Capabilities, Options: g.Options}
}

func ulimits(m map[string]string) []engine.Ulimit {
	us, _ := config.Ulimits(m)
	var out []engine.Ulimit
	for _, u := range us {
		out = append(out, engine.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	return out
}
