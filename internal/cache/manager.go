package cache

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/checkout"
	"github.com/warmcache/warmcache/internal/cache/growth"
	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// Engine is what the cache manager needs from the container engine.
type Engine interface {
	Ping(ctx context.Context) (engine.Info, error)
	EnsureVolume(ctx context.Context, v engine.VolumeSpec) error
	InspectVolume(ctx context.Context, name string) (engine.VolumeInfo, error)
	List(ctx context.Context, labels map[string]string) ([]engine.Resource, error)
	Remove(ctx context.Context, r engine.Resource) error
}

// Manager owns the persistent caches: which volumes a job gets (Claim,
// with forks and commit layers), what a job did to them (MarkStep,
// ReportGrowth, Commit, Measure), and how the disk they use stays bounded
// (GC). What it says of a cache's size and last use comes from its own
// records, out of every job's reach, and from nothing a job can write.
type Manager struct {
	cfg     config.Cache
	engine  Engine
	host    *host.Host // nil: the engine is remote; nothing is measured
	records record.Records
	metrics record.Metrics
	log     *zap.Logger
	remote  Remote // nil: no fleet cache
}

// New returns the manager of the caches cfg describes. h is nil when the
// engine is not on this host.
func New(cfg config.Cache, e Engine, h *host.Host, log *zap.Logger) *Manager {
	return &Manager{
		cfg: cfg, engine: e, host: h, log: log,
		records: record.Records{Dir: filepath.Join(cfg.StateDir, "caches")},
		metrics: record.Metrics{Path: cfg.MetricsFile, StateDir: cfg.StateDir, PerProject: cfg.MetricsPerProject},
	}
}

// SetVersion names warmcache's version in the metrics' build info.
func (m *Manager) SetVersion(v string) { m.metrics.Version = v }

// RecordReap puts a reap pass's removals (by kind: container, volume,
// network, cgroup) in the metrics, and its end when ok (no error).
func (m *Manager) RecordReap(removed map[string]int64, ok bool) {
	m.RecordMetrics(func(s *record.MetricsState) {
		for kind, n := range removed {
			s.ReapedResources(kind, n)
		}
		if ok {
			s.ReapSucceeded(time.Now())
		}
	})
}

// RecordMetrics changes the metrics textfile (cache.metrics_file) with
// fn, under its lock; a failure is logged, never the caller's: metrics
// never fail a job or a pass.
// A nil Manager (the config stage) records nothing.
func (m *Manager) RecordMetrics(fn func(*record.MetricsState)) {
	if m != nil {
		m.updateMetrics(fn)
	}
}

// Say writes one human line to the job log.
type Say func(format string, args ...any)

// JobCaches is what the job containers get from the cache volumes.
type JobCaches struct {
	// Mounts are the build container's; the helper gets those at
	// protocol's cache_dir only.
	Mounts []engine.Mount
	Env    []string
	// persistent names the claimed cache volumes, for Verify.
	persistent []string
	// sizes are the sizes at the start of the volumes the job writes to.
	sizes []growth.Start
}

// key is the job's cache key in the configured pool.
func (m *Manager) key(j job.Job) Key {
	key := profile.KeyFor(j)
	key.Pool = m.cfg.Pool
	return key
}

// planned lists the persistent cache volumes of the job; the same list in
// prepare and cleanup, since it depends only on the job and config (and,
// for the git checkout, on whether the job runs as root: cleanup and the
// GC, which do not know, count the checkout in).
func (m *Manager) planned(j job.Job, nonRoot bool) ([]Volume, []Profile, error) {
	profiles, err := profile.Load(m.cfg)
	if err != nil {
		return nil, nil, err
	}
	if j.GitStrategy() != job.GitFetch || nonRoot && m.host == nil {
		// clone, none and empty start from an empty builds directory of
		// the job's own, as before: a warm checkout serves fetch only.
		// So do jobs that run as another user than root where the engine
		// is remote: the runner's get_sources (as root) hands the checkout
		// to the job's user, and git then refuses, as of dubious
		// ownership, a checkout another user owns, unless it is handed
		// back (checkout.Ready, on this host's volumes only).
		profiles = slices.DeleteFunc(profiles, func(p Profile) bool { return p.Name == profile.Git.Name })
	}
	named := profiles
	if m.cfg.CommitOnSuccess {
		named = profile.Shared(profiles)
	}
	return profile.Plan(m.key(j), named), profiles, nil
}

// Names names the cache volumes a prepare of j may claim or fork: its
// planned caches and, with cache.fork on, the protected caches below its
// forks and their kept layers. A GC pass of that prepare spares them.
func (m *Manager) Names(j job.Job) map[string]bool {
	vols, profiles, err := m.planned(j, false)
	if err != nil {
		return nil
	}
	if m.cfg.Fork != ForkOff && !j.Protected {
		for _, f := range ForkPlan(m.key(j), profiles) {
			if f.Lower.Profile != profile.Git.Name {
				vols = append(vols, f.Lower, f.Layer)
			}
		}
	}
	out := make(map[string]bool, len(vols))
	for _, v := range vols {
		out[v.Name] = true
	}
	return out
}

// Claim creates or reuses the job's cache volumes (or its forks and
// commit layers over them) and says in the job log how warm each one is.
// nonRoot moves caches out of /root for jobs that run as another user.
// cacheDir is where the job's cache_dir is mounted: with caches off, it is
// a volume of the job's own, removed at cleanup.
func (m *Manager) Claim(ctx context.Context, j job.Job, nonRoot bool, cacheDir string, say Say) (JobCaches, error) {
	vols, profiles, err := m.planned(j, nonRoot)
	if err != nil {
		return JobCaches{}, err
	}
	now := time.Now()
	if len(vols) == 0 {
		key := j.Key()
		name := key.Name("cachedir")
		if err := m.engine.EnsureVolume(ctx, engine.VolumeSpec{Name: name, Labels: key.Labels("cachedir", j.Meta(now))}); err != nil {
			return JobCaches{}, err
		}
		return JobCaches{Mounts: []engine.Mount{{Volume: name, Target: cacheDir}}}, nil
	}
	commits := m.commitProfiles(profiles)
	forks := m.findForks(ctx, j, profiles, commits, now)
	var plain []Volume
	for i, v := range vols {
		if forks == nil || forks[i] == nil {
			plain = append(plain, v)
		}
	}
	limited := func(v Volume) bool { return m.cfg.Quota > 0 && !commits[v.Profile] }
	statuses, err := m.claimLimited(ctx, plain, limited, now)
	if err != nil {
		return JobCaches{}, fmt.Errorf("claiming cache volumes: %w", err)
	}
	var c JobCaches
	var uses []record.Use
	for i, v := range vols {
		if forks != nil && forks[i] != nil {
			f, err := m.makeFork(ctx, j, i, *forks[i], now)
			if err != nil {
				return JobCaches{}, fmt.Errorf("forking the protected cache of %s: %w", v.Path, err)
			}
			say("%s", f.line)
			c.Mounts = append(c.Mounts, engine.Mount{Volume: f.volume, Target: profile.Target(v.Path, nonRoot), NoCopy: true})
			uses, c.sizes = append(uses, f.lower), append(c.sizes, f.size)
			continue
		}
		st := statuses[0]
		statuses = statuses[1:]
		if checkout.IsCheckout(v) {
			var ok bool
			if st, ok = m.readyCheckout(ctx, j, st, checkout.Store(vols), now, say); !ok {
				continue // the job's own builds volume instead
			}
		}
		if line := m.restore(ctx, st); line != "" {
			say("%s", line)
		} else {
			say("%s", Describe(st, now))
		}
		if st.QuotaLine != "" {
			say("%s", st.QuotaLine)
		}
		if st.RecordErr != nil {
			m.log.Warn("cache claim not recorded: no lease against the GC", zap.String("volume", st.Name), zap.Error(st.RecordErr))
		}
		mount, size := st.Name, sizeAtStart(st)
		if commits[v.Profile] {
			if mount, size, err = m.makeCommitLayer(ctx, j, i, st, now); err != nil {
				return JobCaches{}, fmt.Errorf("layer over the cache of %s: %w", v.Path, err)
			}
			say("Cache %s %s: the job writes to a layer of its own, applied to the cache only if its steps succeed", v.Profile, v.Path)
		}
		c.Mounts = append(c.Mounts, engine.Mount{Volume: mount, Target: profile.Target(st.Path, nonRoot), NoCopy: true, ReadOnly: checkout.IsStore(v)})
		c.persistent = append(c.persistent, st.Name)
		uses, c.sizes = append(uses, use(st)), append(c.sizes, m.withQuotaUse(ctx, size))
	}
	m.updateMetrics(func(s *record.MetricsState) { s.Claimed(uses) })
	c.Env = profile.Env(profiles, nonRoot)
	return c, nil
}

// Checkout is the warm git checkout claimed for the job's builds
// directory, if it has one: both job containers mount it at builds_dir,
// in place of a volume of the job's own.
func (c JobCaches) Checkout() (engine.Mount, bool) {
	for _, m := range c.Mounts {
		if m.Target == protocol.BuildsDir {
			return m, true
		}
	}
	return engine.Mount{}, false
}

// use is a claimed cache as the metrics count it.
func use(st Status) record.Use {
	return record.Use{Volume: st.Name, Labels: st.Labels, Warm: st.Warm, SizeBytes: st.Record.SizeBytes, SizeKnown: st.Warm && !st.Record.Measured.IsZero()}
}

// updateMetrics changes the metrics file; it never fails the job.
func (m *Manager) updateMetrics(fn func(*record.MetricsState)) {
	if err := m.metrics.Update(fn); err != nil {
		m.log.Warn("updating the metrics file", zap.Error(err))
	}
}

// Verify checks, once the job's containers hold them, that the cache
// volumes are still warmcache's. One removed between the claim and the
// creation of the containers (by hand, or by a GC that ignored the lease)
// was re-created empty and unlabelled by the engine, out of reach of every
// later job: Verify calls removeJob (which removes the job's containers),
// removes that volume, and fails; the prepare fails as a system failure,
// which the runner retries.
func (m *Manager) Verify(ctx context.Context, c JobCaches, removeJob func(context.Context) error) error {
	for _, name := range c.persistent {
		info, err := m.engine.InspectVolume(ctx, name)
		if err != nil {
			return fmt.Errorf("checking cache volume %s: %w", name, err)
		}
		if info.Labels[naming.LabelKind] == string(naming.KindCache) {
			continue
		}
		rerr := removeJob(ctx)
		if rerr == nil {
			rerr = m.engine.Remove(ctx, engine.Resource{Type: engine.Volume, Name: name})
		}
		if rerr != nil {
			m.log.Warn("removing an unlabelled cache volume", zap.String("volume", name), zap.Error(rerr))
		}
		return fmt.Errorf("cache volume %s was removed while the job was being prepared; the job can be retried", name)
	}
	return nil
}

// Measure records, once the job is done (cleanup, off its critical
// path), the sizes of the caches it used, and puts them in the metrics.
func (m *Manager) Measure(ctx context.Context, j job.Job) {
	vols, profiles, err := m.planned(j, false)
	if err != nil {
		return
	}
	vols = append(vols, m.forkLayers(j, profiles)...)
	if j.GitStrategy() == job.GitFetch {
		checkout.Done(ctx, m.checkoutDeps(), j, vols)
	}
	if err := m.measureVolumes(ctx, vols, time.Now()); err != nil {
		m.log.Warn("measuring cache volumes", zap.Error(err))
	}
	quotas := make([]growth.QuotaUse, len(vols))
	for i, v := range vols {
		if m.cfg.MetricsFile != "" {
			quotas[i] = growth.QuotaOf(m.host.Quota(ctx, v.Name))
		}
	}
	m.updateMetrics(func(s *record.MetricsState) {
		for i, v := range vols {
			if r, err := m.records.Get(v.Name); err == nil && !r.Measured.IsZero() {
				s.Sized(v.Name, v.Labels, r.SizeBytes)
				quotas[i].Record(s, v)
			}
		}
	})
}
