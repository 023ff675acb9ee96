package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// cancelGrace bounds how long run waits for the script's processes to end
// after it passed on a cancel; the runner's own kill timeout comes later.
const cancelGrace = 30 * time.Second

// Run executes one stage script in the job's helper or build container,
// piping the script into the container's shell and streaming its output
// live. A non-zero script exit is a protocol.BuildFailure carrying the code.
//
// When ctx is cancelled (the runner sent SIGTERM), every process of the
// stage in the container gets SIGTERM, and Run waits for them to end so
// that after_script and cleanup find a quiet container.
func Run(ctx context.Context, d Deps, scriptPath, stage string) (err error) {
	defer func() { err = explainFullDisk(d, err) }()
	j, err := job.Load(d.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		// Once, when the steps are over: the report walks the caches on
		// the job's time. After a system failure (the container gone, the
		// engine away) the caches are not what the step left.
		var bf *protocol.BuildFailure
		if (err == nil || errors.As(err, &bf)) && protocol.EndsSteps(stage, err != nil, stepStages(j.Steps)) {
			if protocol.IsStep(stage) {
				start := time.Now()
				d.Caches.ReportGrowth(j.Key(), d.say)
				d.Log.Debug("cache growth report", zap.Duration("took", time.Since(start)))
			}
		}
	}()
	defer func() {
		if err == nil && protocol.EndsSteps(stage, false, stepStages(j.Steps)) {
			publishCaches(d, j)
		}
	}()
	defer d.Caches.MarkStep(j.Key(), stage, protocol.IsStep(stage))(&err)
	if stage == protocol.StageRestoreCache {
		start := time.Now()
		defer func() {
			d.Caches.RecordMetrics(func(s *record.MetricsState) { s.Observe(record.StageRestore, time.Since(start)) })
		}()
	}
	// Held-back output is flushed when the exec has ended, before the
	// cache report.
	d, flushLog := masked(d, j)
	defer flushLog(&err)
	script, err := os.Open(scriptPath)
	if err != nil {
		return fmt.Errorf("opening stage script: %w", err)
	}
	defer script.Close()

	target := protocol.Target(stage)
	name := j.Key().Name(target)
	d.Log.Debug("run", zap.String("stage", stage), zap.String("container", name))
	var killedBefore uint64
	if target == naming.KindBuild {
		killedBefore = oomKills(d, j.Key().Base())
	}

	// The exec gets its own context: a cancel must reach the script's
	// processes as a signal, not cut the stream and leave them running.
	execCtx, stopExec := context.WithCancel(context.WithoutCancel(ctx))
	defer stopExec()
	done := make(chan execResult, 1)
	go func() {
		var exit engine.Exit
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("internal error: %v", p)
			}
			done <- execResult{exit, err}
		}()
		exit, err = d.Engine.Exec(execCtx, name, stageCommand(target), script, d.Stdout, d.Stderr)
		// Prepare starts the build container in the background; if that
		// has not happened yet (or failed), start it now and go on, unless
		// the job was cancelled meanwhile.
		if errors.Is(err, engine.ErrNotRunning) && target == naming.KindBuild && ctx.Err() == nil {
			var running bool
			running, err = ensureRunning(execCtx, d, name, err)
			switch {
			case running && ctx.Err() != nil:
				err = fmt.Errorf("not starting the stage: %w", ctx.Err())
			case running:
				exit, err = d.Engine.Exec(execCtx, name, stageCommand(target), script, d.Stdout, d.Stderr)
			}
		}
	}()

	var stopped <-chan string // nil: never fires
	if target == naming.KindBuild {
		var stopGuard func()
		stopped, stopGuard = watchDisk(d, j.Key())
		defer stopGuard()
	}
	var r execResult
	var guarded bool
	select {
	case r = <-done:
	case <-ctx.Done():
		d.say("Job cancelled: sending SIGTERM to the %s stage's processes", stage)
		r = terminate(d, name, done)
	case line := <-stopped:
		select {
		case r = <-done: // ended meanwhile: its own result stands
		default:
			guarded = true
			d.say("%s", line)
			r = terminate(d, name, done)
			afterGuard(d)
		}
	}
	if r.err != nil {
		if errors.Is(r.err, engine.ErrNotRunning) || errors.Is(r.err, engine.ErrNotFound) {
			return fmt.Errorf("the %s container of this job is gone or stopped (daemon restart, or an image entrypoint that does not exec its arguments): %w", target, r.err)
		}
		return fmt.Errorf("running stage %s: %w", stage, r.err)
	}
	var result error
	switch {
	case r.exit.Code != 0:
		result = &protocol.BuildFailure{Code: r.exit.Code}
	case guarded:
		// A script that traps SIGTERM and exits 0 still failed.
		result = &protocol.BuildFailure{Code: 1}
	}
	if target == naming.KindBuild {
		result = afterStep(d, j, stage, killedBefore, result)
	}
	return result
}

// ensureRunning starts a container that was never started, and reports
// whether it runs now (the background start may also just have finished).
// One that ran and stopped is left alone: execErr, the exec's "not
// running", stands.
func ensureRunning(ctx context.Context, d Deps, name string, execErr error) (bool, error) {
	state, err := d.Engine.ContainerState(ctx, name)
	switch {
	case err != nil:
		return false, execErr
	case state == "running":
		return true, nil
	case state != "created":
		return false, execErr
	}
	if err := d.Engine.StartContainer(ctx, name); err != nil {
		return false, fmt.Errorf("starting the build container: %w", err)
	}
	return true, nil
}

type execResult struct {
	exit engine.Exit
	err  error
}

// terminate sends SIGTERM to every process in the container, then waits a
// bounded time for the stage to end. kill -1 spares PID 1 (an init or the
// keep-alive) and the kill itself, and the keep-alive ignores SIGTERM, so
// the container lives on for after_script whatever its PID 1 is.
func terminate(d Deps, name string, done <-chan execResult) execResult {
	ctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	defer cancel()
	signalAll(ctx, d, name)
	var r execResult
	select {
	case r = <-done:
	case <-ctx.Done():
		r = execResult{err: fmt.Errorf("stage processes did not end within %s of SIGTERM", cancelGrace)}
	}
	// A second round reaches what the step started as the first arrived,
	// so it does not outlive the step into after_script.
	sweep, cancelSweep := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelSweep()
	signalAll(sweep, d, name)
	return r
}

// signalAll sends SIGTERM to every process of the container but PID 1.
func signalAll(ctx context.Context, d Deps, name string) {
	if _, err := d.Engine.Exec(ctx, name, []string{"sh", "-c", "kill -TERM -1"}, nil, nil, nil); err != nil {
		d.Log.Warn("signalling stage processes", zap.Error(err))
	}
}
