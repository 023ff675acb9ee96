package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/parallel"
)

// defaultJobTimeout is assumed for resources whose timeout label is missing
// or unreadable (GitLab's own default job timeout).
const defaultJobTimeout = time.Hour

// prepareReapBudget bounds the reaper pass at prepare: a job must not wait
// on another job's leftovers.
const prepareReapBudget = 5 * time.Second

// abandonedJob is the resources of one job that ended without cleanup.
type abandonedJob struct {
	Base      string
	Created   time.Time
	Deadline  time.Time // created + timeout + grace
	Resources []engine.Resource
}

// planReap groups job resources by job and keeps the jobs whose deadline
// has passed. Persistent caches are never part of a plan, and resources
// without a readable creation time are left alone: what cannot be dated
// cannot be proven abandoned.
func planReap(rs []engine.Resource, now time.Time, grace time.Duration) []abandonedJob {
	jobs := map[string]*abandonedJob{}
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
			j = &abandonedJob{Base: base, Created: created}
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
	var out []abandonedJob
	for base, j := range jobs {
		if !undatable[base] && now.After(j.Deadline) {
			out = append(out, *j)
		}
	}
	slices.SortFunc(out, func(a, b abandonedJob) int { return a.Created.Compare(b.Created) })
	return out
}

// strandedNetwork is the network of a job that has no container left.
type strandedNetwork struct {
	Base    string
	Created time.Time
	Network engine.Resource
}

// planStranded returns the networks, oldest first, of jobs that are not
// abandoned yet but have no container left, made more than grace ago: the
// job's cleanup ran and the network's removal failed, or its prepare
// failed in between. Such a network cannot wait for its job's deadline,
// hours away: each holds an address range, and Docker's default pools
// hold about 30. No prepare takes grace (at least 15 minutes) between
// making the network and creating its first container.
func planStranded(rs []engine.Resource, now time.Time, grace time.Duration, abandoned []abandonedJob) []strandedNetwork {
	skip := map[string]bool{}
	for _, j := range abandoned {
		skip[j.Base] = true
	}
	for _, r := range rs {
		if r.Type == engine.Container {
			skip[r.Labels[naming.LabelJob]] = true
		}
	}
	var out []strandedNetwork
	for _, r := range rs {
		base := r.Labels[naming.LabelJob]
		if r.Type != engine.Network || base == "" || skip[base] {
			continue
		}
		created, err := time.Parse(time.RFC3339, r.Labels[naming.LabelCreated])
		if err != nil || now.Sub(created) <= grace {
			continue
		}
		out = append(out, strandedNetwork{Base: base, Created: created, Network: r})
	}
	slices.SortFunc(out, func(a, b strandedNetwork) int { return a.Created.Compare(b.Created) })
	return out
}

// removeStranded removes the networks by id: a retried prepare of the job
// may have made a new one of the same name since they were listed.
func removeStranded(ctx context.Context, e remover, ns []strandedNetwork) []error {
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

// Reap removes the containers, volumes and networks of jobs that ended
// without cleanup, oldest first, and the networks of jobs with no
// container left (see planStranded), and says what it removed (or, with
// dryRun, what it would remove) on stdout.
func Reap(ctx context.Context, d Deps, dryRun bool) error {
	plan, rs, err := reapPlan(ctx, d)
	if err != nil {
		return err
	}
	now := time.Now()
	stranded := planStranded(rs, now, d.Config.Reap.Grace, plan)
	var errs []error
	if len(plan) == 0 && len(stranded) == 0 {
		fmt.Fprintln(d.Stdout, "Nothing to reap.")
	}
	var strandedErrs []error
	if !dryRun {
		strandedErrs = removeStranded(ctx, d.Engine, stranded)
	}
	for i, n := range stranded {
		verb := "Removed"
		switch {
		case dryRun:
			verb = "Would remove"
		case strandedErrs[i] != nil:
			verb = "Failed to remove"
			errs = append(errs, strandedErrs[i])
		}
		fmt.Fprintf(d.Stdout, "%s the network of %s: no container of the job is left, created %s ago\n",
			verb, n.Base, now.Sub(n.Created).Round(time.Second))
	}
	for _, j := range plan {
		verb := "Reaped"
		if dryRun {
			verb = "Would reap"
		} else if err := removeAll(ctx, d.Engine, j.Resources); err != nil {
			errs = append(errs, err)
			verb = "Failed to reap"
		}
		fmt.Fprintf(d.Stdout, "%s %s: %d resources, created %s ago, abandoned since %s ago\n",
			verb, j.Base, len(j.Resources), now.Sub(j.Created).Round(time.Second), now.Sub(j.Deadline).Round(time.Second))
	}
	// After the containers: a cgroup can only go once they have.
	cgs, err := reapCgroups(d, rs, plan, now, dryRun)
	for _, base := range cgs {
		verb := "Reaped"
		if dryRun {
			verb = "Would reap"
		}
		fmt.Fprintf(d.Stdout, "%s the cgroup of %s\n", verb, base)
	}
	return errors.Join(append(errs, err)...)
}

// reapAtPrepare is the bounded pass prepare makes; it never fails the job.
func reapAtPrepare(ctx context.Context, d Deps) {
	if !d.Config.Reap.AtPrepare {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, prepareReapBudget)
	defer cancel()
	plan, rs, err := reapPlan(ctx, d)
	if err != nil {
		d.Log.Warn("reaping abandoned jobs", zap.Error(err))
		return
	}
	now := time.Now()
	stranded := planStranded(rs, now, d.Config.Reap.Grace, plan)
	for i, err := range removeStranded(ctx, d.Engine, stranded) {
		d.Log.Info("removed the network of a job with no container left", zap.String("job", stranded[i].Base), zap.Error(err))
	}
	for _, j := range plan {
		err := removeAll(ctx, d.Engine, j.Resources)
		d.Log.Info("reaped abandoned job", zap.String("job", j.Base), zap.Int("resources", len(j.Resources)), zap.Error(err))
	}
	cgs, err := reapCgroups(d, rs, plan, now, false)
	d.Log.Info("reaped job cgroups", zap.Strings("jobs", cgs), zap.Error(err))
}

func reapPlan(ctx context.Context, d Deps) ([]abandonedJob, []engine.Resource, error) {
	rs, err := d.Engine.List(ctx, map[string]string{naming.LabelManaged: "true"})
	if err != nil {
		return nil, nil, fmt.Errorf("listing warmcache resources: %w", err)
	}
	return planReap(rs, time.Now(), d.Config.Reap.Grace), rs, nil
}

// removeAll removes containers first: they hold the volumes and networks.
func removeAll(ctx context.Context, e remover, rs []engine.Resource) error {
	var containers, rest []engine.Resource
	for _, r := range rs {
		if r.Type == engine.Container {
			containers = append(containers, r)
		} else {
			rest = append(rest, r)
		}
	}
	remove := func(r engine.Resource) error { return e.Remove(ctx, r) }
	return errors.Join(parallel.Each(containers, remove), parallel.Each(rest, remove))
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
