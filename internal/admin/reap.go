package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/warmcache/warmcache/internal/reap"
)

// Reap removes the containers, volumes and networks of jobs that ended
// without cleanup, oldest first, and the networks of jobs with no
// container left (see reap.Stranded), and says what it removed (or, with
// dryRun, what it would remove) on stdout.
func Reap(ctx context.Context, d Deps, dryRun bool) error {
	rd := reap.Deps{Engine: d.Engine, Config: d.Config.Reap, Cgroups: d.Cgroups}
	plan, rs, err := reap.Plan(ctx, rd)
	if err != nil {
		return err
	}
	now := time.Now()
	stranded := reap.Stranded(rs, now, d.Config.Reap.Grace, plan)
	var errs []error
	if len(plan) == 0 && len(stranded) == 0 {
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
	for _, j := range plan {
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
	cgs, err := reap.RemoveCgroups(rd, rs, plan, now, dryRun)
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
