// Package reap removes what jobs left behind: the containers, volumes,
// networks and cgroups of jobs that ended without cleanup, and a job's
// resources at its cleanup. Persistent caches are never removed here.
package reap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/parallel"
)

// defaultJobTimeout is assumed for resources whose timeout label is missing
// or unreadable (GitLab's own default job timeout).
const defaultJobTimeout = time.Hour

// prepareReapBudget bounds the reaper pass at prepare: a job must not wait
// on another job's leftovers.
const prepareReapBudget = 5 * time.Second

// Deps is what the reaper works with.
type Deps struct {
	Engine Engine
	Config config.Reap
	// Cgroups manages the jobs' cgroups on the engine's host; nil when
	// the driver does not run beside the engine.
	Cgroups *cgroup.Host
	// SlotNetworkOptions is the options digest of the slots' networks
	// under the current config (plan.SlotNetworkOptions; "" when jobs get
	// none): a slot network with another is stale (see StaleSlotNetworks).
	SlotNetworkOptions string
}

// Job is the resources of one job that ended without cleanup.
type Job struct {
	Base      string
	Created   time.Time
	Deadline  time.Time // created + timeout + grace
	Resources []engine.Resource
}

// Abandoned groups job resources by job and keeps the jobs whose deadline
// has passed, oldest first. Persistent caches are never part of a plan,
// and resources without a readable creation time are left alone: what
// cannot be dated cannot be proven abandoned.
func Abandoned(rs []engine.Resource, now time.Time, grace time.Duration) []Job {
	jobs := map[string]*Job{}
	undatable := map[string]bool{}
	for _, r := range rs {
		base := r.Labels[naming.LabelJob]
		if base == "" || r.Labels[naming.LabelKind] == string(naming.KindCache) {
			continue
		}
		created, err := time.Parse(time.RFC3339, r.Labels[naming.LabelCreated])
		// A date in the future means clocks disagree (another host on a
		// shared engine, a clock step): such a job cannot be judged.
		if err != nil || created.After(now.Add(time.Minute)) {
			undatable[base] = true
			continue
		}
		timeout := defaultJobTimeout
		if s, err := strconv.Atoi(r.Labels[naming.LabelTimeout]); err == nil && s > 0 {
			timeout = time.Duration(s) * time.Second
		}
		j := jobs[base]
		if j == nil {
			j = &Job{Base: base, Created: created}
			jobs[base] = j
		}
		// The job's newest resource decides: it was alive then.
		if created.After(j.Created) {
			j.Created = created
		}
		if d := created.Add(timeout + grace); d.After(j.Deadline) {
			j.Deadline = d
		}
		j.Resources = append(j.Resources, r)
	}
	var out []Job
	for base, j := range jobs {
		if !undatable[base] && now.After(j.Deadline) {
			out = append(out, *j)
		}
	}
	slices.SortFunc(out, func(a, b Job) int { return a.Created.Compare(b.Created) })
	return out
}

// StrandedNetwork is the network of a job that has no container left.
type StrandedNetwork struct {
	Base    string
	Created time.Time
	Network engine.Resource
}

// Stranded returns the networks, oldest first, of jobs that are not
// abandoned yet but have no container left, made more than grace ago: the
// job's cleanup ran and the network's removal failed, or its prepare
// failed in between. Such a network cannot wait for its job's deadline,
// hours away: each holds an address range, and Docker's default pools
// hold about 30. No prepare takes grace (at least 15 minutes) between
// making the network and creating its first container.
func Stranded(rs []engine.Resource, now time.Time, grace time.Duration, abandoned []Job) []StrandedNetwork {
	skip := map[string]bool{}
	for _, j := range abandoned {
		skip[j.Base] = true
	}
	for _, r := range rs {
		if r.Type == engine.Container {
			skip[r.Labels[naming.LabelJob]] = true
		}
	}
	var out []StrandedNetwork
	for _, r := range rs {
		base := r.Labels[naming.LabelJob]
		if r.Type != engine.Network || base == "" || skip[base] {
			continue
		}
		created, err := time.Parse(time.RFC3339, r.Labels[naming.LabelCreated])
		if err != nil || now.Sub(created) <= grace {
			continue
		}
		out = append(out, StrandedNetwork{Base: base, Created: created, Network: r})
	}
	slices.SortFunc(out, func(a, b StrandedNetwork) int { return a.Created.Compare(b.Created) })
	return out
}

// RemoveStranded removes the networks by id: a retried prepare of the job
// may have made a new one of the same name since they were listed. The
// errors are the networks', in order.
func RemoveStranded(ctx context.Context, e Engine, ns []StrandedNetwork) []error {
	errs := make([]error, len(ns))
	parallel.Each(indexes(len(ns)), func(i int) error {
		r := ns[i].Network
		if r.ID != "" {
			r.Name = r.ID
		}
		errs[i] = e.Remove(ctx, r)
		return nil
	})
	return errs
}

// StaleSlotNetworks returns the networks of runner slots, oldest first,
// made under other network options than current (a config changed them,
// or turned slot networks off) more than grace ago: no prepare under the
// current config uses them again. A slot network of the current options
// is kept: there is one per runner slot, no more than the networks that
// many jobs running at once would hold, and its reuse is the point.
// Docker refuses to remove one a container is still on (a job of the old
// config still running): RemoveSlotNetworks leaves it for a later pass.
func StaleSlotNetworks(rs []engine.Resource, now time.Time, grace time.Duration, current string) []engine.Resource {
	var out []engine.Resource
	for _, r := range rs {
		if r.Type != engine.Network || r.Labels[naming.LabelKind] != string(naming.KindSlotNetwork) || r.Labels[naming.LabelNetworkOptions] == current {
			continue
		}
		created, err := time.Parse(time.RFC3339, r.Labels[naming.LabelCreated])
		if err != nil || now.Sub(created) <= grace {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b engine.Resource) int {
		return strings.Compare(a.Labels[naming.LabelCreated], b.Labels[naming.LabelCreated])
	})
	return out
}

// RemoveSlotNetworks removes the networks by id; one still in use is
// kept, and not an error. It returns the errors, in order, and says which
// were removed.
func RemoveSlotNetworks(ctx context.Context, e Engine, ns []engine.Resource) (removed []bool, errs []error) {
	removed, errs = make([]bool, len(ns)), make([]error, len(ns))
	parallel.Each(indexes(len(ns)), func(i int) error {
		r := ns[i]
		if r.ID != "" {
			r.Name = r.ID
		}
		err := e.Remove(ctx, r)
		removed[i] = err == nil
		if !errors.Is(err, engine.ErrInUse) {
			errs[i] = err
		}
		return nil
	})
	return removed, errs
}

// Removed counts what a pass removed, by kind: "container", "volume",
// "network" (engine.ResourceType) and "cgroup".
type Removed map[string]int64

// Add counts the resources rs.
func (r Removed) Add(rs ...engine.Resource) {
	for _, x := range rs {
		r[string(x.Type)]++
	}
}

// AtPrepare is the bounded pass prepare makes, when reap.at_prepare is
// set; it never fails the job, and says what it did in log only. It
// returns what it removed, and whether a pass ran and ended without an
// error.
func AtPrepare(ctx context.Context, d Deps, log *zap.Logger) (removed Removed, ok bool) {
	removed = Removed{}
	if !d.Config.AtPrepare {
		return removed, false
	}
	ctx, cancel := context.WithTimeout(ctx, prepareReapBudget)
	defer cancel()
	plan, rs, err := Plan(ctx, d)
	if err != nil {
		log.Warn("reaping abandoned jobs", zap.Error(err))
		return removed, false
	}
	ok = true
	now := time.Now()
	stranded := Stranded(rs, now, d.Config.Grace, plan)
	for i, err := range RemoveStranded(ctx, d.Engine, stranded) {
		log.Info("removed the network of a job with no container left", zap.String("job", stranded[i].Base), zap.Error(err))
		if err != nil {
			ok = false
		} else {
			removed.Add(stranded[i].Network)
		}
	}
	stale := StaleSlotNetworks(rs, now, d.Config.Grace, d.SlotNetworkOptions)
	gone, errs := RemoveSlotNetworks(ctx, d.Engine, stale)
	for i, n := range stale {
		log.Info("stale slot network", zap.String("network", n.Name), zap.Bool("removed", gone[i]), zap.Error(errs[i]))
		if errs[i] != nil {
			ok = false
		}
		if gone[i] {
			removed.Add(n)
		}
	}
	for _, j := range plan {
		err := RemoveAll(ctx, d.Engine, j.Resources)
		log.Info("reaped abandoned job", zap.String("job", j.Base), zap.Int("resources", len(j.Resources)), zap.Error(err))
		if err != nil {
			ok = false
		} else {
			removed.Add(j.Resources...)
		}
	}
	cgs, err := RemoveCgroups(d, rs, plan, now, false)
	log.Info("reaped job cgroups", zap.Strings("jobs", cgs), zap.Error(err))
	removed["cgroup"] += int64(len(cgs))
	return removed, ok && err == nil
}

// Plan lists warmcache's resources and returns the abandoned jobs among
// them (see Abandoned), and all of them.
func Plan(ctx context.Context, d Deps) ([]Job, []engine.Resource, error) {
	rs, err := d.Engine.List(ctx, map[string]string{naming.LabelManaged: "true"})
	if err != nil {
		return nil, nil, fmt.Errorf("listing warmcache resources: %w", err)
	}
	return Abandoned(rs, time.Now(), d.Config.Grace), rs, nil
}

// RemoveCgroups removes the cgroups of reaped jobs and of jobs that left no
// container, volume or network behind (a prepare that failed half-way, a
// cleanup killed between the two), and returns the jobs whose cgroup it
// removed (with dryRun, would remove). A cgroup is an orphan only once it
// is older than the grace: a prepare creates it just before its containers.
func RemoveCgroups(d Deps, rs []engine.Resource, reaped []Job, now time.Time, dryRun bool) ([]string, error) {
	if d.Cgroups == nil {
		return nil, nil
	}
	live := map[string]bool{}
	for _, r := range rs {
		live[r.Labels[naming.LabelJob]] = true
	}
	for _, j := range reaped {
		live[j.Base] = false
	}
	found, err := d.Cgroups.Jobs()
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, cg := range found {
		if alive, known := live[cg.Base]; alive || !known && now.Sub(cg.Modified) < d.Config.Grace {
			continue
		}
		if !dryRun {
			if err := d.Cgroups.Remove(cg.Base); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		done = append(done, cg.Base)
	}
	return done, errors.Join(errs...)
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
