package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/agent"
	"github.com/warmcache/warmcache/internal/cache/remote"
	"github.com/warmcache/warmcache/internal/credentials"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/human"
	"github.com/warmcache/warmcache/internal/limits"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/plan"
	"github.com/warmcache/warmcache/internal/reap"
)

// Free-disk levels below which doctor warns and fails: caches and job
// containers fill the engine's data root.
const (
	diskWarnFraction = 0.15
	diskFailFraction = 0.05
)

// finding is one doctor line: ok, warn or fail, what, and what to do.
type finding struct {
	level string
	what  string
}

// Doctor checks what warmcache needs on this host and prints one line per
// check on stdout, with what to fix. The config was already loaded and
// validated by then. It fails when any check fails.
func Doctor(ctx context.Context, d Deps) error {
	var found []finding
	add := func(level, format string, args ...any) {
		found = append(found, finding{level, fmt.Sprintf(format, args...)})
	}
	add("ok", "config: valid")
	tokenFilesCheck(d, add)
	runnerCheck(d, d.RunnerConfig, add)

	info, err := d.Engine.Ping(ctx)
	if err != nil {
		add("FAIL", "engine: %v: start dockerd, or fix docker.host (%s)", err, d.Config.Docker.Host)
		return report(d, found)
	}
	add("ok", "engine: Docker %s at %s, API %s", info.ServerVersion, d.Config.Docker.Host, info.APIVersion)
	if info.StorageDriver == "overlay2" {
		add("ok", "storage driver: overlay2")
	} else {
		add("warn", "storage driver: %s; overlay2 is the tested one (set \"storage-driver\" in /etc/docker/daemon.json)", info.StorageDriver)
	}
	add("ok", "cgroups: version %s, %s driver", info.CgroupVersion, info.CgroupDriver)
	limitsCheck(d, info, add)

	images := []string{d.Config.Docker.DefaultImage}
	if h := d.Config.Docker.HelperImage; h != "" && h != images[0] {
		images = append(images, d.Config.Docker.HelperImage)
	} else if h == "" {
		add("ok", "helper image: the official one for each runner's version, pulled at prepare")
	}
	for _, img := range images {
		_, err := d.Engine.InspectImage(ctx, img)
		switch {
		case err == nil:
			add("ok", "image %s: present", img)
		case errors.Is(err, engine.ErrNotFound) && d.Config.Docker.PullPolicy[0] != "never":
			add("warn", "image %s: not present yet; the first job pulls it", img)
		default:
			add("FAIL", "image %s: %v: load it on this host (docker load) or allow a pull policy that fetches it", img, err)
		}
	}

	diskCheck(info.RootDir, add)
	agentCheck(d, add)
	quotaCheck(d, add)
	networksCheck(ctx, d, add)
	fleetCheck(ctx, d, add)

	entries, err := d.Caches.List(ctx)
	if err != nil {
		add("FAIL", "caches: %v", err)
	} else {
		var total int64
		for _, e := range entries {
			total += e.SizeBytes
		}
		add("ok", "caches: %d volumes, %s measured", len(entries), human.Bytes(total))
	}
	return report(d, found)
}

// networksWarn is the number of job networks at which doctor warns:
// Docker's default address pools hold about 30 networks.
const networksWarn = 20

// networksCheck counts the job networks, those of them whose job has no
// container left (a failed removal: see reap.Stranded), and the runner
// slots' networks, stale ones among them (see reap.StaleSlotNetworks).
func networksCheck(ctx context.Context, d Deps, add func(level, format string, args ...any)) {
	rs, err := d.Engine.List(ctx, map[string]string{naming.LabelManaged: "true"})
	if err != nil {
		add("warn", "networks: %v", err)
		return
	}
	networks, slots := 0, 0
	for _, r := range rs {
		switch {
		case r.Type != engine.Network:
		case r.Labels[naming.LabelKind] == string(naming.KindSlotNetwork):
			slots++
		default:
			networks++
		}
	}
	stale := len(reap.StaleSlotNetworks(rs, time.Now(), 0, plan.SlotNetworkOptions(d.Config)))
	// Of any age: a young one may still be in a prepare.
	stranded := len(reap.Stranded(rs, time.Now(), 0, nil))
	level, hint := "ok", ""
	if networks+slots >= networksWarn {
		level, hint = "warn", "; Docker's default address pools hold about 30: add default-address-pools to /etc/docker/daemon.json"
	}
	if stranded > 0 {
		hint += fmt.Sprintf("; %d with no container left (the reaper removes them once older than reap.grace)", stranded)
	}
	if stale > 0 {
		hint += fmt.Sprintf("; %d slot networks of other network options than the config's (the reaper removes them once empty and older than reap.grace)", stale)
	}
	counts := fmt.Sprintf("%d job networks", networks)
	if slots > 0 {
		counts += fmt.Sprintf(" and %d runner slot networks (one per slot, reused by its jobs)", slots)
	}
	add(level, "networks: %s%s", counts, hint)
}

// diskCheck reports the free space of the engine's data root when it is on
// this host.
func diskCheck(root string, add func(level, format string, args ...any)) {
	if root == "" {
		add("warn", "disk: the engine did not say where its data root is")
		return
	}
	free, total, err := host.DiskSpace(root)
	if errors.Is(err, fs.ErrNotExist) {
		add("ok", "disk: data root %s is not on this host; check its free space there", root)
		return
	}
	if err != nil {
		add("warn", "disk: %v", err)
		return
	}
	frac := float64(free) / float64(total)
	level, hint := "ok", ""
	switch {
	case frac < diskFailFraction:
		level, hint = "FAIL", ": free space (warmcache cache ls, docker system prune)"
	case frac < diskWarnFraction:
		level, hint = "warn", ": free space soon (warmcache cache ls)"
	}
	add(level, "disk: %s free of %s (%.0f%%) at %s%s", human.Bytes(free), human.Bytes(total), 100*frac, root, hint)
}

// quotaCheck says whether cache.quota, when set, is enforced here.
func quotaCheck(d Deps, add func(level, format string, args ...any)) {
	q := int64(d.Config.Cache.Quota)
	if q == 0 {
		return
	}
	if err := d.Caches.QuotaSupport(); err != nil {
		add("warn", "cache quota: %s not enforced, caches have no size limit: %v", human.Limit(q), err)
		return
	}
	add("ok", "cache quota: %s per cache volume created from now on (an ext4 image on a loop device each)", human.Limit(q))
}

func report(d Deps, found []finding) error {
	failed := 0
	for _, f := range found {
		fmt.Fprintf(d.Stdout, "%-4s %s\n", f.level, f.what)
		if f.level == "FAIL" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("doctor: %d checks failed", failed)
	}
	return nil
}

// limitsCheck is doctor's line about resource limits: what a job gets when
// the admin sets no job-wide limit, or why there is no job cgroup.
func limitsCheck(d Deps, info engine.Info, add func(level, format string, args ...any)) {
	switch {
	case d.Cgroups == nil:
		add("ok", "limits: per container only: the engine is not local, so jobs get no cgroup of their own")
	case !d.Cgroups.Unified && info.CgroupDriver == "systemd":
		add("warn", "limits: cgroup v1 with the systemd driver: jobs get no cgroup of their own; the build container's limits stand in")
	default:
		if err := d.Cgroups.Writable(); err != nil {
			add("warn", "limits: jobs get no cgroup of their own (%v); the build container's limits stand in: run gitlab-runner as root, with the cgroup tree mounted read-write", err)
		}
		cpus, mem := d.Cgroups.Capacity()
		share := limits.DefaultShare(limits.Host{NanoCPUs: cpus, Memory: mem}, d.Config.Limits.ConcurrentJobs)
		add("ok", "limits: a job's default share is %s and %s (%s, %s / limits.concurrent_jobs = %d)",
			limits.CPUs(share.NanoCPUs), limits.MiB(share.Memory), limits.CPUs(cpus), limits.MiB(mem), d.Config.Limits.ConcurrentJobs)
	}
}

// tokenFilesCheck reads every service-account token file as prepare will,
// for doctor.
func tokenFilesCheck(d Deps, add func(level, format string, args ...any)) {
	for i, t := range d.Config.Env.Tokens {
		if _, err := credentials.ReadToken(t.TokenFile, os.ReadFile); err != nil {
			add("FAIL", "env.token[%d] (%s): %v: every prepare would fail", i, t.Host, err)
			continue
		}
		add("ok", "env.token[%d] (%s): token file %s is readable", i, t.Host, t.TokenFile)
	}
}

// fleetCheck probes the fleet cache's store (cache.remote), when set.
func fleetCheck(ctx context.Context, d Deps, add func(level, format string, args ...any)) {
	r := d.Config.Cache.Remote
	tier := remote.New(r, nil, zap.NewNop())
	if tier == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := tier.Probe(ctx); err != nil {
		add("FAIL", "fleet cache: %s bucket %s: %v: check cache.remote (url, credential files, bucket)", r.URL, r.Bucket, err)
		return
	}
	add("ok", "fleet cache: %s bucket %s: reachable, write/read/delete ok; publish = %q", r.URL, r.Bucket, r.Publish)
}

// agentCheck says whether stages run through the stage agent, and what
// keeps them from it.
func agentCheck(d Deps, add func(level, format string, args ...any)) {
	switch {
	case !d.Config.Docker.StageAgent:
		add("ok", "stage agent: off (docker.stage_agent = false): one docker exec per stage")
		return
	case d.Cgroups == nil: // the engine is not local (see limitsCheck)
		add("ok", "stage agent: not with a remote engine: one docker exec per stage")
		return
	}
	exe, err := agent.Self()
	if err != nil {
		add("warn", "stage agent: %v", err)
		return
	}
	add("ok", "stage agent: %s, mounted into job containers (no exec per stage)", exe)
}
