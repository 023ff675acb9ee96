package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/migrate"
)

// shellError is the failure of a command an admin runs from a shell
// (migrate): exit code 1, whatever the runner's exit-code variables say.
type shellError struct{ error }

func (e shellError) Unwrap() error { return e.error }

// migrateCommand prints warmcache's config for a Docker-executor runner of
// gitlab-runner's config.toml, then the [runners.custom] block as comments;
// stderr gets one line per runner key not carried as it is.
func migrateCommand(stdout, stderr io.Writer, cmdErr *error) *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "print warmcache's config and the [runners.custom] block for a Docker-executor runner",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "gitlab-runner's config.toml `FILE` (required)"},
			&cli.StringFlag{Name: "runner", Usage: "the [[runners]] `NAME` to migrate (default: the only one with executor = \"docker\")"},
		},
		Action: func(c *cli.Context) error {
			*cmdErr = runMigrate(c, stdout, stderr)
			return nil
		},
	}
}

func runMigrate(c *cli.Context, stdout, stderr io.Writer) error {
	from := c.String("from")
	if from == "" {
		return shellError{fmt.Errorf("migrate needs --from FILE, gitlab-runner's config.toml")}
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return shellError{fmt.Errorf("reading runner config: %w", err)}
	}
	exe, err := os.Executable()
	if err != nil {
		return shellError{fmt.Errorf("finding this binary's path: %w", err)}
	}
	// The block passes --config: a missing file then fails the job instead
	// of silently running with the defaults.
	configPath, _ := config.Resolve(c.String("config"), os.Getenv)
	res, err := migrate.Migrate(string(data), migrate.Options{Source: from, Runner: c.String("runner"), Exe: exe, ConfigPath: configPath})
	if err != nil {
		return shellError{err}
	}
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, n)
	}
	_, err = io.WriteString(stdout, res.Text)
	return err
}
