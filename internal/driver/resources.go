package driver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/limits"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/parallel"
	"github.com/warmcache/warmcache/internal/protocol"
)

// jobLimits works out the job's limits from the config, the host and the
// job's request, and says in the job log what the job got. A request the
// driver cannot read is the job's own error: a build failure.
func jobLimits(d Deps, j job.Job) (limits.Plan, error) {
	var host limits.Host
	if d.cgroups() != nil {
		host.NanoCPUs, host.Memory = d.cgroups().Capacity()
	}
	// From the job response: the variables the job's YAML set. A request
	// only ever lowers what the admin allows, so it needs no trust.
	req := limits.Request{CPUs: j.Variable(limits.RequestCPUsVar), Memory: j.Variable(limits.RequestMemoryVar)}
	plan, err := limits.Resolve(d.Config.Limits, j.ProjectPath, j.ProjectID, host, req)
	if errors.Is(err, limits.ErrBadRequest) {
		return limits.Plan{}, &protocol.BuildFailure{Reason: err.Error()}
	}
	if err != nil {
		return limits.Plan{}, err
	}
	d.say("%s", plan.Granted)
	return plan, nil
}

// askDriver asks the engine for its cgroup driver in the background, while
// prepare pulls images and claims caches; setUpCgroup takes the answer.
func askDriver(ctx context.Context, d Deps) (wait func() (string, error)) {
	if d.cgroups() == nil {
		return func() (string, error) { return "", nil }
	}
	var driver string
	w := parallel.Go(func() error {
		info, err := d.Engine.Ping(ctx)
		driver = info.CgroupDriver
		return err
	})
	return func() (string, error) {
		err := w()
		return driver, err
	}
}

// setUpCgroup creates the job's cgroup with the job-wide limits and returns
// the cgroup parent of its containers; "" when there is none (a remote
// engine, or a set-up warmcache cannot manage: each container's own limits
// still apply, see withLimits).
func setUpCgroup(d Deps, key naming.JobKey, plan limits.Plan, driver func() (string, error)) (string, error) {
	if d.cgroups() == nil {
		return "", nil
	}
	name, err := driver()
	if err != nil {
		return "", err
	}
	cg := *d.cgroups()
	cg.Systemd = name == "systemd"
	// An earlier attempt's cgroup (its containers are gone by now) would
	// carry its peak and OOM counts into this job's report.
	if err := cg.Remove(key.Base()); err != nil {
		return "", err
	}
	l := plan.Job
	err = cg.Create(key.Base(), cgroup.Limits{NanoCPUs: l.NanoCPUs, CpusetCpus: l.CpusetCpus, Memory: l.Memory, PidsLimit: l.PidsLimit})
	if errors.Is(err, cgroup.ErrUnsupported) {
		d.say("WARNING: %v: the build container's own limits stand in for the job's", err)
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return cg.Parent(key.Base()), nil
}

// removeCgroup removes the job's cgroup; cleanup calls it once the job's
// containers are gone.
func removeCgroup(d Deps, base string) error {
	if d.cgroups() == nil {
		return nil
	}
	return d.cgroups().Remove(base)
}

// oomKills is the job's OOM kill count so far, read before a step so that
// only the step's own kills count against it.
func oomKills(d Deps, base string) uint64 {
	if d.cgroups() == nil {
		return 0
	}
	u, err := d.cgroups().Usage(base)
	if err != nil {
		return 0
	}
	return u.OOMKills
}

// afterStep turns a step's result into the stage's: a failed step during
// which the kernel killed a process for memory says so plainly. After the
// job's last step stage it writes the usage line to the job log.
func afterStep(d Deps, j job.Job, stage string, killedBefore uint64, result error) error {
	if d.cgroups() == nil {
		return result
	}
	u, err := d.cgroups().Usage(j.Key().Base())
	if errors.Is(err, cgroup.ErrNoCgroup) {
		// Prepare could make none and said so once in the job log.
		d.Log.Debug("the job has no cgroup to report on", zap.Error(err))
		return result
	}
	if err != nil {
		d.Log.Warn("reading the job's cgroup", zap.Error(err))
		return result
	}
	if u.OOMKills > killedBefore {
		d.Caches.RecordMetrics(func(s *record.MetricsState) { s.OOMKilled(int64(u.OOMKills - killedBefore)) })
	}
	var bf *protocol.BuildFailure
	if errors.As(result, &bf) && bf.Reason == "" && u.OOMKills > killedBefore {
		result = &protocol.BuildFailure{Code: bf.Code, Reason: fmt.Sprintf("out of memory: limit %s, peak %s", limits.MiB(u.OOMLimit), limits.MiB(u.OOMPeak))}
	}
	if lastStepStage(stage, result != nil, j.Steps) {
		d.say("%s", usageLine(u))
	}
	return result
}

// usageLine is the job log's account of what the job used.
func usageLine(u cgroup.Usage) string {
	oom := "nothing OOM-killed"
	if u.OOMKills > 0 {
		oom = fmt.Sprintf("%d process(es) OOM-killed", u.OOMKills)
	}
	return fmt.Sprintf("Job resources used: peak memory %s of %s, CPU %.1fs, throttled %.1fs, %s",
		limits.MiB(u.PeakMemory), limits.MiB(u.MemoryLimit), u.CPU.Seconds(), u.Throttled.Round(100*time.Millisecond).Seconds(), oom)
}

// lastStepStage says whether stage ends the job's steps, the point for the
// usage line. Cleanup would see the final figures, but its output never
// reaches the job log; so the line follows after_script when the job has
// one (it runs after a failure too), else the last step, or the first
// failing one (the runner stops there). The steps come from the job
// response, so this is known before they run.
func lastStepStage(stage string, failed bool, steps []job.Step) bool {
	hasAfter := false
	for _, s := range steps {
		if s.Name == "after_script" {
			hasAfter = len(s.Script) > 0
		}
	}
	switch {
	case stage == "after_script":
		return true
	case hasAfter:
		return false
	default:
		return protocol.EndsSteps(stage, failed, stepStages(steps))
	}
}

// stepStages names the run stages in which the runner runs the job's
// steps, in order (protocol.StepStage).
func stepStages(steps []job.Step) []string {
	var out []string
	for _, s := range steps {
		if stage, ok := protocol.StepStage(s.Name); ok {
			out = append(out, stage)
		}
	}
	return out
}
