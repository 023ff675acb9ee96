// Package plan decides every container (and the network) warmcache
// creates for a job, with every option, as a pure function of the job,
// the admin's config and the Facts prepare found (images, user, caches,
// credentials, limits, cgroup): package driver carries the plan out. A
// new container option is a field of engine.ContainerSpec and a line here;
// plan_test.go golden-tests the whole plan over a table of jobs and
// configs.
package plan

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/warmcache/warmcache/internal/agent"
	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/dockerflag"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/images"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/limits"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
	"github.com/warmcache/warmcache/internal/services"
)

// Facts are what prepare has found out, and made sure of, by the time it
// decides the job's containers: the images, the user the build runs as,
// the network to join, the caches claimed, the credentials planned, the
// limits granted and the cgroup made.
type Facts struct {
	Image, Helper string
	// User is the build container's user: the job's, else its image's.
	User string
	// Network is what the helper and the services join: the job's own
	// network, or the admin's network_mode.
	Network  string
	Services []services.Service
	Caches   cache.JobCaches
	// Env is what the [env] section gives the job's containers, and
	// Secrets the job's tmpfs volume of credential files (nil: none).
	Env     []string
	Secrets *engine.Mount
	Limits  limits.Plan
	// CgroupParent is the job's cgroup, "" when it has none.
	CgroupParent string
	Meta         naming.JobMeta
	// SecurityOpt and ServicesSecurityOpt are docker.security_opt and
	// docker.services_security_opt with each seccomp profile named by
	// its file read into the option (see securityOpts).
	SecurityOpt, ServicesSecurityOpt []string
	// Agent is the host path of the stage agent's binary (package agent),
	// mounted into the helper and build containers as their main process;
	// "" keeps the keep-alive shell, and stages run through exec.
	Agent string
}

// JobPlan is every container prepare creates for a job, with every
// option: plan decides it, a pure function of the job, the config and
// the Facts, and Prepare carries it out. A new container option is a
// field of engine.ContainerSpec and a line here.
type JobPlan struct {
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

// Make decides the job's containers. The build container gets the builds
// volume (the warm git checkout when the job has one), the credentials'
// tmpfs and every cache; the helper (which runs git, the cache and
// artifact stages) gets the builds volume, the credentials, cache_dir and
// the git object store the warm checkout borrows from;
// each is limited as the plan of limits says, under the job's cgroup, and
// gets the runner's container options as the Docker executor gives them
// (see withOptions).
func Make(j job.Job, cfg config.Config, f Facts) JobPlan {
	key := j.Key()
	builds, ok := f.Caches.Checkout()
	if !ok {
		builds = engine.Mount{Volume: key.Name(naming.KindBuilds), Target: protocol.BuildsDir}
	}
	buildMounts := []engine.Mount{builds}
	helperMounts := []engine.Mount{builds}
	if f.Secrets != nil {
		buildMounts = append(buildMounts, *f.Secrets)
		helperMounts = append(helperMounts, *f.Secrets)
	}
	for _, c := range f.Caches.Mounts {
		if c.Target == protocol.BuildsDir {
			continue // mounted first, in both
		}
		buildMounts = append(buildMounts, c)
		if c.Target == protocol.CacheDir || c.Target == protocol.GitStoreDir {
			helperMounts = append(helperMounts, c)
		}
	}
	helper := engine.ContainerSpec{
		Name: key.Name(naming.KindHelper), Image: f.Helper, Cmd: KeepAlive,
		Labels: key.Labels(naming.KindHelper, f.Meta), Mounts: helperMounts, Env: f.Env,
		NetworkMode: f.Network, KeepStdinOpen: true,
	}
	build := engine.ContainerSpec{
		Name: key.Name(naming.KindBuild), Image: f.Image, Cmd: KeepAlive,
		Entrypoint: j.Image.Entrypoint, Labels: f.Caches.Labels(key.Labels(naming.KindBuild, f.Meta)),
		User: j.Image.ExecutorOpts.Docker.User, Env: withEnv(f.Caches.Env, f.Env), Mounts: buildMounts,
		NetworkMode: buildNetwork(cfg.Docker.NetworkMode, helper.Name), KeepStdinOpen: true,
	}
	vols := userVolumes(key, cfg.Docker.ContainerOptions, f.Meta)
	p := JobPlan{
		Helper:   withLimits(helperOptions(helper, cfg.Docker.ContainerOptions, f, vols), f.Limits.Helper, f.CgroupParent),
		Build:    withLimits(buildOptions(build, cfg, f, vols), withinJob(f.Limits.Build, f.Limits.Job), f.CgroupParent),
		Services: services.ContainerSpecs(key, j, f.Services, f.Network, f.Meta),
		Volumes:  vols.specs,
		NonRoot:  NonRoot(f.User),
	}
	if f.Agent != "" {
		p.Helper, p.Build = withAgent(p.Helper, f.Agent), withAgent(p.Build, f.Agent)
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

// Network is the job's own network (when the admin's network_mode
// names none): a bridge with docker.network_mtu and docker.enable_ipv6,
// as the Docker executor's per-build network.
func Network(key naming.JobKey, cfg config.Config, meta naming.JobMeta) engine.NetworkSpec {
	return engine.NetworkSpec{
		Name: key.Name(naming.KindNetwork), Labels: key.Labels(naming.KindNetwork, meta),
		MTU: cfg.Docker.NetworkMTU, EnableIPv6: cfg.Docker.EnableIPv6,
	}
}

// SlotNetwork is the network the job's runner slot reuses from job to
// job (unless docker.network_per_job): the job's network, made once.
func SlotNetwork(j job.Job, cfg config.Config, now time.Time) engine.NetworkSpec {
	opts := SlotNetworkOptions(cfg)
	return engine.NetworkSpec{
		Name:   naming.SlotNetwork(j.RunnerShortToken, j.RunnerID, j.ConcurrentID, opts),
		Labels: naming.SlotNetworkLabels(j.RunnerID, j.ConcurrentID, opts, now),
		MTU:    cfg.Docker.NetworkMTU, EnableIPv6: cfg.Docker.EnableIPv6,
	}
}

// SlotNetworkOptions is the digest of the options of the slots' networks
// under cfg, in their names and labels; "" when jobs get no slot network
// (docker.network_mode, docker.network_per_job): then every slot network
// is stale. A new network option goes into the digest.
func SlotNetworkOptions(cfg config.Config) string {
	if cfg.Docker.NetworkMode != "" || cfg.Docker.NetworkPerJob {
		return ""
	}
	return naming.Hash("bridge", strconv.Itoa(cfg.Docker.NetworkMTU), strconv.FormatBool(cfg.Docker.EnableIPv6))[:8]
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
func privilegedBuild(cfg config.Config, f Facts) (privileged bool, note string) {
	return images.Privileged(cfg.Docker.Privileged, "image", f.Image, "docker.allowed_privileged_images", cfg.Docker.AllowedPrivilegedImages)
}

// privilegedService says whether a service of that image runs privileged:
// docker.services_privileged (unset: docker.privileged), gated by
// docker.allowed_privileged_services.
func privilegedService(cfg config.Config, svc services.Service) (privileged bool, note string) {
	return images.Privileged(cfg.Docker.ServicesArePrivileged(), "service", svc.Image.Name, "docker.allowed_privileged_services", cfg.Docker.AllowedPrivilegedServices)
}

// buildOptions gives the build container the runner's options.
func buildOptions(s engine.ContainerSpec, cfg config.Config, f Facts, v volumes) engine.ContainerSpec {
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
func helperOptions(s engine.ContainerSpec, o config.ContainerOptions, f Facts, v volumes) engine.ContainerSpec {
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
func withHostOptions(s engine.ContainerSpec, o config.ContainerOptions, f Facts, v volumes) engine.ContainerSpec {
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
func serviceOptions(s engine.ContainerSpec, cfg config.Config, f Facts, svc services.Service, v volumes) engine.ContainerSpec {
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
		vol, err := dockerflag.ParseVolume(spec)
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
		if p, err := dockerflag.ParseDevice(d); err == nil {
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
	g, err := dockerflag.ParseGpus(s)
	if err != nil || g == nil {
		return nil
	}
	return &engine.GPURequest{Count: g.Count, Driver: g.Driver, DeviceIDs: g.DeviceIDs, Capabilities: g.Capabilities, Options: g.Options}
}

func ulimits(m map[string]string) []engine.Ulimit {
	us, _ := dockerflag.Ulimits(m)
	var out []engine.Ulimit
	for _, u := range us {
		out = append(out, engine.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	return out
}

// buildNetwork puts the build container in the helper's network
// namespace: both see the same network (as in a Kubernetes pod), and the
// engine sets up one network stack per job instead of two, which is a good
// part of a job's start and removal time. Host networking is shared anyway.
func buildNetwork(mode, helper string) string {
	if mode == "host" {
		return mode
	}
	return "container:" + helper
}

// NonRoot says whether a container user ("name", "uid" or "uid:gid") is
// someone other than root.
func NonRoot(user string) bool {
	name, _, _ := strings.Cut(user, ":")
	return name != "" && name != "root" && name != "0"
}

// withEnv returns base with over's variables added, an entry of over
// replacing one of base with the same name.
func withEnv(base, over []string) []string {
	if len(over) == 0 {
		return base
	}
	out := make([]string, 0, len(base)+len(over))
	names := map[string]bool{}
	for _, kv := range over {
		name, _, _ := strings.Cut(kv, "=")
		names[name] = true
	}
	for _, kv := range base {
		if name, _, _ := strings.Cut(kv, "="); !names[name] {
			out = append(out, kv)
		}
	}
	return append(out, over...)
}

// withLimits sets a container's limits and cgroup parent on its spec.
func withLimits(s engine.ContainerSpec, c limits.Container, parent string) engine.ContainerSpec {
	s.NanoCPUs, s.CpusetCpus, s.Memory, s.MemorySwap = c.NanoCPUs, c.CpusetCpus, c.Memory, c.MemorySwap
	s.MemoryReservation, s.PidsLimit, s.ShmSize, s.CgroupParent = c.MemoryReservation, c.PidsLimit, c.ShmSize, parent
	return s
}

// withinJob caps a container's limits at the job's. For the build container
// this keeps the job's limits where the job's cgroup cannot hold them, and
// makes a container's OOM kill name the limit the job was granted.
func withinJob(c limits.Container, j limits.Job) limits.Container {
	lower := func(v *int64, max int64) {
		if max > 0 && (*v == 0 || *v > max) {
			*v = max
		}
	}
	lower(&c.NanoCPUs, j.NanoCPUs)
	lower(&c.Memory, j.Memory)
	lower(&c.PidsLimit, j.PidsLimit)
	if c.MemoryReservation > c.Memory && c.Memory > 0 {
		c.MemoryReservation = c.Memory
	}
	if c.MemorySwap > 0 && c.MemorySwap < c.Memory {
		c.MemorySwap = c.Memory
	}
	return c
}

// withAgent makes the stage agent the container's main process: it keeps
// the container alive as KeepAlive does (an image entrypoint still runs
// first and execs it), and serves the stages.
func withAgent(c engine.ContainerSpec, binary string) engine.ContainerSpec {
	c.Cmd = agent.Command
	c.Binds = append(slices.Clip(c.Binds), engine.Bind{Source: binary, Target: agent.BinaryPath, ReadOnly: true})
	return c
}

// KeepAlive is the main process of every job container: it blocks on the
// container's stdin (kept open, never written) so the container lives until
// cleanup, and it needs nothing but a POSIX shell.
// If stdin ever reaches end of file it falls back to sleeping. It ignores
// SIGTERM: a cancelled stage's processes are signalled with kill -1, which
// spares only PID 1, and under an init (dumb-init, tini) the keep-alive is
// not PID 1.
var KeepAlive = []string{"sh", "-c", "trap '' TERM; while :; do read _ || sleep 3600 || exit 0; done"}
