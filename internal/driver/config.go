package driver

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/warmcache/warmcache/internal/protocol"
)

// Config prints the executor configuration JSON, and nothing else, on
// stdout. The admin config was already loaded and validated by then, so a
// bad config file fails this stage with its message in the job log.
func Config(d Deps, version string) error {
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("reading hostname: %w", err)
	}
	out := protocol.ConfigOutput{
		BuildsDir: protocol.BuildsDir,
		CacheDir:  protocol.CacheDir,
		Hostname:  host,
		Driver:    protocol.Driver{Name: "warmcache", Version: version},
		Shell:     "bash",
	}
	enc := json.NewEncoder(d.Stdout)
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing config JSON: %w", err)
	}
	return nil
}
