package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/custom"
)

// registerCommand prints the `gitlab-runner register` command that points
// a new runner at this binary, and the same runner entry as config.toml.
func registerCommand(stdout io.Writer, cmdErr *error) *cli.Command {
	return &cli.Command{
		Name:  "register",
		Usage: "print the gitlab-runner register command (and config.toml entry) for this binary",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "$CI_SERVER_URL", Usage: "the GitLab instance `URL`"},
			&cli.StringFlag{Name: "token", Value: "$CI_SERVER_TOKEN", Usage: "the runner authentication `TOKEN` (glrt-...)"},
			&cli.StringFlag{Name: "name", Value: "warmcache", Usage: "the runner's `NAME` in config.toml"},
		},
		Action: func(c *cli.Context) error {
			*cmdErr = runRegister(c, stdout)
			return nil
		},
	}
}

func runRegister(c *cli.Context, stdout io.Writer) error {
	configPath, optional := config.Resolve(c.String("config"), os.Getenv)
	cfg, err := config.Load(configPath, optional)
	if err != nil {
		return shellError{err}
	}
	exe, err := os.Executable()
	if err != nil {
		return shellError{fmt.Errorf("finding this binary's path: %w", err)}
	}
	s := custom.For(exe, configPath, cfg)
	r := custom.Registration{URL: c.String("url"), Token: c.String("token"), Name: c.String("name"), Limit: cfg.Limits.ConcurrentJobs}
	n := cfg.Limits.ConcurrentJobs
	if _, err := os.Stat(configPath); err != nil {
		// Every stage is given --config, so that a file removed later
		// fails the job instead of running it with the defaults.
		fmt.Fprintf(stdout, "# %s does not exist yet: create it before the first job (it may be empty).\n", configPath)
	}
	_, err = fmt.Fprintf(stdout, `# Register warmcache with gitlab-runner, as root on this host. Without --url
# and --token, the shell fills them in from $CI_SERVER_URL and $CI_SERVER_TOKEN.
%s
# Then set concurrent = %d at the top of gitlab-runner's config.toml: it must
# equal limits.concurrent_jobs in %s (warmcache doctor checks).
#
# ---- or the same by hand, in gitlab-runner's config.toml ----
# concurrent = %d
%s`, s.RegisterCommand(r), n, configPath, n, s.Entry(r))
	return err
}
