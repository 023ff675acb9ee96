package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/warmcache/warmcache/internal/plan"
	"github.com/warmcache/warmcache/internal/reap"
)

// Reap removes the containers, volumes and networks of jobs that ended
// without cleanup, oldest first, and the networks of jobs with no
// container left (see reap.Stranded), and says what it removed (or, with
// dryRun, what it would remove) on stdout.
func Reap(ctx context.Context, d Deps, dryRun bool) error {
	rd := reap.Deps{Engine: d.Engine, Config: d.Config.Reap, Cgroups: d.Cgroups, SlotNetworkOptions: plan.SlotNetworkOptions(d.Config)}
	jobs, rs, err := reap.Plan(ctx, rd)
	if err != nil {
		return err
	}
	now := time.Now()
	stranded := reap.Stranded(rs, now, d.Config.Reap.Grace, jobs)
	stale := reap.StaleSlotNetworks(rs, now, d.Config.Reap.Grace, rd.SlotNetworkOptions)
	var errs []error
	if len(jobs) == 0 && len(stranded) == 0 && len(stale) == 0 {
		fmt.Fprintln(d.Stdout, "Nothing to reap.")
	}
	var strandedErrs []error
	removed := reap.Removed{}
	if !dryRun {
		strandedErrs = reap.RemoveStranded(ctx, d.Engine, stranded)
	}
	for i, n := range stranded {
		verb := "Removed"
		switch {
		case dryRun:
			verb = "Would remove"
		case strandedErrs[i] != nil:
			verb = "Failed to remove"
			errs = append(errs, strandedErrs[i])
		default:
			removed.Add(n.Network)
		}
		fmt.Fprintf(d.Stdout, "%s the network of %s: no container of the job is left, created %s ago\n",
			verb, n.Base, now.Sub(n.Created).Round(time.Second))
	}
	var gone []bool
	var staleErrs []error
	if !dryRun {
		gone, staleErrs = reap.RemoveSlotNetworks(ctx, d.Engine, stale)
	}
	for i, n := range stale {
		verb := "Removed"
		switch {
		case dryRun:
			verb = "Would remove"
		case staleErrs[i] != nil:
			verb = "Failed to remove"
			errs = append(errs, staleErrs[i])
		case !gone[i]:
			verb = "Kept (a container is still on it)"
		default:
			removed.Add(n)
		}
		fmt.Fprintf(d.Stdout, "%s the slot network %s: made under other network options than the config's\n", verb, n.Name)
	}
	for _, j := range jobs {
		verb := "Reaped"
		if dryRun {
			verb = "Would reap"
		} else if err := reap.RemoveAll(ctx, d.Engine, j.Resources); err != nil {
			errs = append(errs, err)
			verb = "Failed to reap"
		} else {
			removed.Add(j.Resources...)
		}
		fmt.Fprintf(d.Stdout, "%s %s: %d resources, created %s ago, abandoned since %s ago\n",
			verb, j.Base, len(j.Resources), now.Sub(j.Created).Round(time.Second), now.Sub(j.Deadline).Round(time.Second))
	}
	// After the containers: a cgroup can only go once they have.
	cgs, err := reap.RemoveCgroups(rd, rs, jobs, now, dryRun)
	for _, base := range cgs {
		verb := "Reaped"
		if dryRun {
			verb = "Would reap"
		}
		fmt.Fprintf(d.Stdout, "%s the cgroup of %s\n", verb, base)
	}
	errs = append(errs, err)
	if !dryRun {
		removed["cgroup"] += int64(len(cgs))
		d.Caches.RecordReap(removed, errors.Join(errs...) == nil)
	}
	return errors.Join(errs...)
}
