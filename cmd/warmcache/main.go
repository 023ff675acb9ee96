// Command warmcache is a GitLab custom-executor driver: gitlab-runner calls
// its config, prepare, run and cleanup subcommands, one process per stage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/warmcache/warmcache/internal/admin"
	"github.com/warmcache/warmcache/internal/agent"
	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/cache/remote"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/driver"
	"github.com/warmcache/warmcache/internal/engine/docker"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
	"github.com/warmcache/warmcache/internal/protocol"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit code so that main holds the
// only os.Exit and deferred work always runs.
func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		// A bug must never show a Go trace in the job log: it is a system
		// failure with one line.
		if p := recover(); p != nil {
			fmt.Fprintf(stderr, "warmcache: internal error: %s\n", oneLine(fmt.Errorf("%v", p)))
			code, _ = protocol.ExitCode(errors.New("panic"), os.Getenv)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var stageErr error
	app := newApp(stdout, stderr, &stageErr)
	if len(args) > 0 && args[len(args)-1] == "--generate-bash-completion" {
		// The shell completion scripts read the candidates from stdout;
		// everything else cli prints goes to stderr (stdout is the
		// protocol's channel).
		app.Writer = stdout
	}
	if err := app.RunContext(ctx, args); err != nil {
		// Usage errors (unknown subcommand or flag) are the admin's
		// configuration: a system failure.
		stageErr = err
	}
	if stageErr != nil {
		fmt.Fprintf(stderr, "warmcache: %s\n", oneLine(stageErr))
	}
	if errors.As(stageErr, new(shellError)) {
		return 1
	}
	code, err := protocol.ExitCode(stageErr, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "warmcache: %v\n", err)
	}
	return code
}

func newApp(stdout, stderr io.Writer, stageErr *error) *cli.App {
	// Each stage action records its outcome here instead of returning it,
	// so that cli prints nothing of its own and exit codes stay ours.
	stage := func(f func(c *cli.Context, d driver.Deps) error, needEngine bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			*stageErr = withDeps(c, stdout, stderr, needEngine, f)
			return nil
		}
	}
	// A usage mistake is the admin's configuration: one line in the job
	// log, not the whole help text, for the app and every command.
	usageError := func(_ *cli.Context, err error, _ bool) error { return err }
	app := &cli.App{
		Name:            "warmcache",
		Usage:           "GitLab custom executor with warm, persistent caches",
		Version:         version,
		Writer:          stderr,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		// The packaged bash and zsh completions ask the binary itself.
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {},
		OnUsageError:         usageError,
		CommandNotFound: func(_ *cli.Context, name string) {
			*stageErr = fmt.Errorf("unknown command %q: use config, prepare, run, cleanup, cache, reap, doctor, migrate or register", name)
		},
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "TOML config `FILE` (default $WARMCACHE_CONFIG, else " + config.DefaultPath + ")"},
		},
		Commands: []*cli.Command{
			{
				Name:  "config",
				Usage: "config stage: print the executor configuration JSON",
				Action: stage(func(c *cli.Context, d driver.Deps) error {
					return driver.Config(d, version)
				}, false),
			},
			{
				Name:  "prepare",
				Usage: "prepare stage: pull images and start the job's containers",
				Action: stage(func(c *cli.Context, d driver.Deps) error {
					return driver.Prepare(c.Context, d)
				}, true),
			},
			{
				Name:      "run",
				Usage:     "run stage: execute a stage script in the job's containers",
				ArgsUsage: "SCRIPT STAGE",
				Action: stage(func(c *cli.Context, d driver.Deps) error {
					if c.NArg() != 2 {
						return fmt.Errorf("run needs 2 arguments, SCRIPT and STAGE; got %d", c.NArg())
					}
					return driver.Run(c.Context, d, c.Args().Get(0), c.Args().Get(1))
				}, true),
			},
			{
				Name:  "cleanup",
				Usage: "cleanup stage: remove the job's containers and volumes, keep caches",
				Action: stage(func(c *cli.Context, d driver.Deps) error {
					return driver.Cleanup(d)
				}, true),
			},
			migrateCommand(stdout, stderr, stageErr),
			registerCommand(stdout, stageErr),
			startContainerCommand(stageErr),
			removeJobCommand(stageErr),
			publishCachesCommand(stageErr),
			{
				// The main process of a job container (package agent); it
				// runs inside the container and reads no config.
				Name:   "agent",
				Hidden: true,
				Action: func(c *cli.Context) error {
					agent.Serve(stderr)
					return nil
				},
			},
			{
				Name:   "manpage",
				Usage:  "print the man page (roff), for the package",
				Hidden: true,
				Action: func(c *cli.Context) error {
					man, err := c.App.ToMan()
					if err == nil {
						_, err = io.WriteString(stdout, man)
					}
					*stageErr = err
					return nil
				},
			},
			{
				Name:  "doctor",
				Usage: "check the engine, storage, cgroups, config, gitlab-runner's config, images and free disk; print what to fix",
				Flags: []cli.Flag{&cli.StringFlag{Name: "runner-config", Value: admin.DefaultRunnerConfig, Usage: "gitlab-runner's config.toml `FILE` (\"\" skips its check)"}},
				Action: stage(func(c *cli.Context, d driver.Deps) error {
					ad := adminDeps(d)
					ad.RunnerConfig = c.String("runner-config")
					return admin.Doctor(c.Context, ad)
				}, true),
			},
			{
				Name:  "reap",
				Usage: "remove containers, volumes and networks of jobs that ended without cleanup (never caches)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "dry-run", Usage: "print the plan, remove nothing"}},
				Action: stage(func(c *cli.Context, d driver.Deps) error {
					return admin.Reap(c.Context, adminDeps(d), c.Bool("dry-run"))
				}, true),
			},
			{
				Name:  "cache",
				Usage: "inspect and bound the persistent cache volumes",
				Subcommands: []*cli.Command{
					{
						Name:  "ls",
						Usage: "list cache volumes: project, profile, trust, size, last use",
						Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON for scripts"},
							&cli.BoolFlag{Name: "remote", Usage: "list the fleet cache's snapshots (cache.remote) instead"}},
						Action: stage(func(c *cli.Context, d driver.Deps) error {
							if c.Bool("remote") {
								return admin.CacheListRemote(c.Context, adminDeps(d), c.Bool("json"))
							}
							return admin.CacheList(c.Context, adminDeps(d), c.Bool("json"))
						}, true),
					},
					{
						Name:  "gc",
						Usage: "evict least recently used caches until every cache.gc limit holds (never one in use)",
						Flags: []cli.Flag{&cli.BoolFlag{Name: "dry-run", Usage: "print the plan, remove nothing"},
							&cli.BoolFlag{Name: "remote", Usage: "bound the fleet cache (cache.remote) instead: old snapshots, keys idle over cache.gc.max_idle"}},
						Action: stage(func(c *cli.Context, d driver.Deps) error {
							if c.Bool("remote") {
								return admin.CacheGCRemote(c.Context, adminDeps(d), c.Bool("dry-run"))
							}
							return admin.CacheGC(c.Context, adminDeps(d), c.Bool("dry-run"))
						}, true),
					},
				},
			},
		},
	}
	var each func([]*cli.Command)
	each = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.OnUsageError = usageError
			each(c.Subcommands)
		}
	}
	each(app.Commands)
	return app
}

// withDeps loads the config, opens the log and, when asked, connects to the
// engine, then calls f.
func withDeps(c *cli.Context, stdout, stderr io.Writer, needEngine bool, f func(*cli.Context, driver.Deps) error) error {
	// Cleanup must not leak a job's containers because the admin broke the
	// config (or its log directory) while the job ran: it goes on with the
	// built-in defaults and says why. Every other command refuses.
	lenient := c.Command.Name == "cleanup"
	path, optional := config.Resolve(c.String("config"), os.Getenv)
	cfg, err := config.Load(path, optional)
	if err != nil && lenient {
		fmt.Fprintf(stderr, "warmcache: %s; cleaning up with the built-in defaults\n", oneLine(err))
		cfg, err = config.Default(), nil
	}
	if err != nil {
		return err
	}
	logger, closeLog, err := newLogger(cfg.Log, stderr, slices.Contains(jobStages, c.Command.Name))
	if err != nil && lenient {
		fmt.Fprintf(stderr, "warmcache: %s; no structured log for this cleanup\n", oneLine(err))
		logger, closeLog, err = zap.NewNop(), func() {}, nil
	}
	if err != nil {
		return err
	}
	defer closeLog()
	// The engine may come from DOCKER_HOST (and its TLS variables): every
	// stage and helper sees the one it resolved.
	conn, err := cfg.Docker.Engine(os.Getenv)
	if err != nil {
		return err
	}
	cfg.Docker.Host = conn.Host
	engineOpts := docker.Options{TLSVerify: conn.TLSVerify, CertPath: conn.CertPath}
	d := driver.Deps{
		Config: cfg, Getenv: os.Getenv, Stdout: stdout, Stderr: stderr,
		Log:      logger.With(zap.String("stage", c.Command.Name)),
		Detached: starter{configPath: path, optional: optional, host: conn.Host, engine: engineOpts},
	}
	if needEngine {
		engine, err := docker.New(conn.Host, engineOpts)
		if err != nil {
			return err
		}
		defer engine.Close()
		d.Engine = engine
		// The engine's host filesystem and cgroups are this process's to
		// reach only when the engine is local: decided here, once.
		if host.Local(cfg.Docker.Host) {
			cg := cgroup.Detect("")
			d.Host = host.New(engine, &cg)
			if cfg.Docker.StageAgent {
				if d.Agent, err = agent.Self(); err != nil {
					d.Log.Warn("no stage agent", zap.Error(err))
				} else {
					d.Engine = agent.Engine{Engine: engine, PIDs: engine, Dial: d.Host.DialIn, Wait: agent.StartWait, Log: d.Log}
				}
			}
		}
		d.Caches = cache.New(cfg.Cache, engine, d.Host, d.Log)
		d.Caches.SetVersion(version)
		if t := remote.New(cfg.Cache.Remote, d.Host, d.Log); t != nil && d.Host != nil {
			t.TempDir = filepath.Join(cfg.Cache.StateDir, "tmp")
			d.Caches.SetRemote(t)
		}
	}
	err = f(c, d)
	if err != nil {
		d.Log.Error("stage failed", zap.Error(err))
	}
	d.Log.Debug("stage finished", zap.Int64("peak_rss_kib", peakRSS()))
	return err
}

// adminDeps is what the admin commands are given: the stages' config,
// engine, stdout and cgroups.
func adminDeps(d driver.Deps) admin.Deps {
	return admin.Deps{Config: d.Config, Engine: d.Engine, Stdout: d.Stdout, Cgroups: hostCgroups(d.Host), Caches: d.Caches}
}

// hostCgroups are the jobs' cgroups on the engine's host, nil without one.
func hostCgroups(h *host.Host) *cgroup.Host {
	if h == nil {
		return nil
	}
	return h.Cgroups
}

// peakRSS is this process's peak resident memory in KiB (VmHWM), or -1.
// Unlike the rusage a parent sees, it does not include the parent's memory
// at the fork.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// jobStages are the commands the runner calls for a job: their stderr is
// the job log, which never gets structured lines.
var jobStages = []string{"config", "prepare", "run", "cleanup"}

// newLogger returns the structured JSON logger: to cfg.File when it opens;
// else, when the file is the default (its directory is the package's) or
// "", to stderr for the admin commands and nowhere for the job stages. A
// file the config names that cannot be opened is an error.
func newLogger(cfg config.Log, stderr io.Writer, jobStage bool) (*zap.Logger, func(), error) {
	level, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, nil, fmt.Errorf("log.level: %w", err)
	}
	build := func(w zapcore.WriteSyncer) *zap.Logger {
		enc := zap.NewProductionEncoderConfig()
		enc.EncodeTime = zapcore.ISO8601TimeEncoder
		core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), w, level)
		return zap.New(core).With(zap.Int("pid", os.Getpid()))
	}
	if cfg.File != "" {
		// Appending, and opened by each process: logrotate may rename the
		// file (no copytruncate needed); the next process makes a new one.
		f, err := os.OpenFile(cfg.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err == nil {
			return build(zapcore.AddSync(f)), func() { _ = f.Close() }, nil
		}
		if cfg.FileInFile {
			return nil, nil, fmt.Errorf("log.file: %w", err)
		}
	}
	if jobStage {
		return zap.NewNop(), func() {}, nil
	}
	return build(zapcore.AddSync(stderr)), func() {}, nil
}

// oneLine keeps an error on one job-log line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
