package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/cache/remote"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine/docker"
	"github.com/warmcache/warmcache/internal/host"
)

const (
	publishCachesName = "publish-caches"
	trustFlag         = "trust"
)

// publishCachesCommand is started detached by the run stage that ends a
// successful job's steps: it publishes the job's caches to the fleet
// cache (cache.remote), off the job's critical path, bounded by
// remote.PublishTimeout. Its outcome goes to the structured log.
func publishCachesCommand(stageErr *error) *cli.Command {
	return &cli.Command{
		Name:      publishCachesName,
		Hidden:    true,
		ArgsUsage: "VOLUME...",
		Flags:     append(engineFlags(), &cli.StringFlag{Name: trustFlag, Required: true}),
		Action: func(c *cli.Context) error {
			*stageErr = publishCaches(c)
			return nil
		},
	}
}

func publishCaches(c *cli.Context) error {
	path, optional := config.Resolve(c.String("config"), os.Getenv)
	cfg, err := config.Load(path, optional)
	if err != nil {
		return err
	}
	logger, closeLog, err := newLogger(cfg.Log, io.Discard, true)
	if err != nil {
		return err
	}
	defer closeLog()
	logger = logger.With(zap.String("stage", publishCachesName))
	e, err := docker.New(c.String(hostFlag), docker.Options{TLSVerify: c.Bool(tlsVerifyFlag), CertPath: c.String(tlsCertPathFlag)})
	if err != nil {
		return err
	}
	defer e.Close()
	tier := remote.New(cfg.Cache.Remote, host.New(e, nil), logger)
	if tier == nil {
		return nil
	}
	tier.TempDir = filepath.Join(cfg.Cache.StateDir, "tmp")
	records := record.Records{Dir: filepath.Join(cfg.Cache.StateDir, "caches")}
	start := time.Now()
	metrics := record.Metrics{Path: cfg.Cache.MetricsFile, StateDir: cfg.Cache.StateDir, PerProject: cfg.Cache.MetricsPerProject, Version: version}
	err = tier.PublishVolumes(context.Background(), e, records, metrics, c.String(trustFlag), c.Args().Slice())
	if err != nil {
		logger.Error("stage failed", zap.Error(err))
	} else {
		logger.Info("stage finished", zap.Duration("took", time.Since(start)))
	}
	return err
}

// PublishCaches implements driver.Detached.
func (s starter) PublishCaches(trust string, volumes []string) error {
	args := s.args(publishCachesName, "--"+trustFlag)
	return background(append(args, append([]string{trust}, volumes...)...))
}
