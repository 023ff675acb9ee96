package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/driver"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/docker"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/reap"
)

// The hidden commands a stage starts detached (see starter), and the flag
// naming their engine.
const (
	startContainerName = "start-container"
	removeJobName      = "remove-job"
	hostFlag           = "host"
	tlsVerifyFlag      = "tls-verify"
	tlsCertPathFlag    = "tls-cert-path"
	afterFlag          = "after"
	// endedAtFlag is when cleanup handed the job's resources over (see
	// reap.RemoveEnded).
	endedAtFlag = "ended-at"
)

// engineFlags name the stage's engine on a helper command's command line.
func engineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: hostFlag, Required: true},
		&cli.BoolFlag{Name: tlsVerifyFlag},
		&cli.StringFlag{Name: tlsCertPathFlag},
	}
}

// startContainerCommand is started detached by prepare, so the build
// container's start overlaps the first (helper) stages. Its outcome is
// checked by the run stage, which starts the container itself if this
// did not.
func startContainerCommand(stageErr *error) *cli.Command {
	return &cli.Command{
		Name:      startContainerName,
		Hidden:    true,
		ArgsUsage: "NAME",
		Flags:     append(engineFlags(), &cli.StringFlag{Name: afterFlag}),
		Action: func(c *cli.Context) error {
			*stageErr = detached(c, func(ctx context.Context, e engine.Engine) error {
				return driver.StartContainer(ctx, e, c.Args().First(), c.String(afterFlag))
			})
			return nil
		},
	}
}

// removeJobCommand is started detached by cleanup once the job's
// containers are marked ended: their removal, then that of the job's
// volumes, networks and cgroup, takes longer than anything else in
// cleanup, and nothing waits for it. A failure goes to the structured
// log; the reaper removes what this leaves.
func removeJobCommand(stageErr *error) *cli.Command {
	return &cli.Command{
		Name:      removeJobName,
		Hidden:    true,
		ArgsUsage: "JOB RESOURCE...",
		Flags:     append(engineFlags(), &cli.StringFlag{Name: endedAtFlag, Required: true}),
		Action: func(c *cli.Context) error {
			*stageErr = detached(c, func(ctx context.Context, e engine.Engine) error {
				var rs []engine.Resource
				for _, arg := range c.Args().Tail() {
					r, err := parseResourceArg(arg)
					if err != nil {
						return err
					}
					rs = append(rs, r)
				}
				// The job's cgroup is on the engine's host: this one's only
				// when the engine is local, as for the stage.
				var cgroups *cgroup.Host
				if host.Local(c.String(hostFlag)) {
					cg := cgroup.Detect("")
					cgroups = &cg
				}
				endedAt, err := time.Parse(time.RFC3339Nano, c.String(endedAtFlag))
				if err != nil {
					return fmt.Errorf("--%s: %w", endedAtFlag, err)
				}
				return reap.RemoveEnded(ctx, e, cgroups, c.Args().First(), rs, endedAt)
			})
			return nil
		},
	}
}

// starter is the stages' driver.Detached: it starts this executable's
// hidden commands above detached from the stage: in its own session (the
// runner's signals to the stage's process group do not reach it), with no
// stdio, not waited for. It names the stage's config file on their
// command line, since they get no WARMCACHE_CONFIG, for them to log their
// outcome where the stage does.
type starter struct {
	configPath string
	optional   bool   // configPath is the default, found without naming it
	host       string // the engine's address, from the stage's config
	engine     docker.Options
}

// StartContainer implements driver.Detached.
func (s starter) StartContainer(name, after string) error {
	args := []string{name}
	if after != "" {
		args = []string{"--" + afterFlag + "=" + after, name}
	}
	return background(s.args(startContainerName, args...))
}

// RemoveJob implements driver.Detached.
func (s starter) RemoveJob(base string, rs []engine.Resource) error {
	args := []string{"--" + endedAtFlag + "=" + time.Now().Format(time.RFC3339Nano), base}
	for _, r := range rs {
		args = append(args, resourceArg(r))
	}
	return background(s.args(removeJobName, args...))
}

// args is the command line of the hidden command with its arguments.
func (s starter) args(command string, arg ...string) []string {
	args := []string{command, "--" + hostFlag, s.host}
	if s.engine.TLSVerify {
		args = append(args, "--"+tlsVerifyFlag, "--"+tlsCertPathFlag, s.engine.CertPath)
	}
	return detachedArgs(s.configPath, s.optional, append(args, arg...))
}

// detachedArgs is the command line of a detached helper command: args,
// after the stage's config file unless that is the optional default,
// which the helper finds by itself.
func detachedArgs(configPath string, optional bool, args []string) []string {
	if optional {
		return args
	}
	return append([]string{"--config", configPath}, args...)
}

func background(args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, args...)
	// The job's variables (tokens among them) stay with the stage.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// detached runs f, the work of a helper command that a stage started with
// its starter, with an engine client of its own, bounded in time. Nobody
// reads its stderr, so its outcome goes to the structured log of the
// config file when that can be opened: a failure is not lost.
func detached(c *cli.Context, f func(context.Context, engine.Engine) error) error {
	logger := zap.NewNop()
	path, optional := config.Resolve(c.String("config"), os.Getenv)
	if cfg, err := config.Load(path, optional); err == nil {
		// Its stderr goes nowhere: a job stage's logger (the file, or none).
		if l, closeLog, err := newLogger(cfg.Log, io.Discard, true); err == nil {
			defer closeLog()
			logger = l.With(zap.String("stage", c.Command.Name), zap.Strings("args", c.Args().Slice()))
		}
	}
	start := time.Now()
	err := onEngine(c.String(hostFlag), docker.Options{TLSVerify: c.Bool(tlsVerifyFlag), CertPath: c.String(tlsCertPathFlag)}, f)
	if err != nil {
		logger.Error("stage failed", zap.Error(err))
	} else {
		logger.Info("stage finished", zap.Duration("took", time.Since(start)))
	}
	return err
}

// onEngine runs f with an engine client of its own, bounded in time.
func onEngine(host string, opts docker.Options, f func(context.Context, engine.Engine) error) error {
	e, err := docker.New(host, opts)
	if err != nil {
		return err
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return f(ctx, e)
}

// resourceArg spells a resource on remove-job's command line: "type:name",
// a network by its id.
func resourceArg(r engine.Resource) string {
	if r.Type == engine.Network && r.ID != "" {
		return string(r.Type) + ":" + r.ID
	}
	return string(r.Type) + ":" + r.Name
}

// parseResourceArg reads what resourceArg wrote.
func parseResourceArg(s string) (engine.Resource, error) {
	typ, name, ok := strings.Cut(s, ":")
	switch t := engine.ResourceType(typ); {
	case !ok || name == "":
		return engine.Resource{}, fmt.Errorf("resource %q: want type:name", s)
	case t == engine.Container || t == engine.Volume || t == engine.Network:
		return engine.Resource{Type: t, Name: name}, nil
	default:
		return engine.Resource{}, fmt.Errorf("resource %q: unknown type %q", s, typ)
	}
}
