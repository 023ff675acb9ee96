package driver

import (
	"encoding/json"
	"fmt"
	"os"
)

// Directories the job sees inside its containers.
const (
	BuildsDir = "/builds"
	CacheDir  = "/cache"
)

// ConfigOutput is the config stage's answer to gitlab-runner (protocol §2).
type ConfigOutput struct {
	BuildsDir         string            `json:"builds_dir"`
	CacheDir          string            `json:"cache_dir"`
	BuildsDirIsShared bool              `json:"builds_dir_is_shared"`
	Hostname          string            `json:"hostname"`
	Driver            Driver            `json:"driver"`
	JobEnv            map[string]string `json:"job_env,omitempty"`
	Shell             string            `json:"shell"`
}

// Driver names the driver in the job log.
type Driver struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Config prints the executor configuration JSON, and nothing else, on
// stdout. The admin config was already loaded and validated by then, so a
// bad config file fails this stage with its message in the job log.
func Config(d Deps, version string) error {
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("reading hostname: %w", err)
	}
	out := ConfigOutput{
		BuildsDir: BuildsDir,
		CacheDir:  CacheDir,
		Hostname:  host,
		Driver:    Driver{Name: "warmcache", Version: version},
		Shell:     "bash",
	}
	enc := json.NewEncoder(d.Stdout)
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing config JSON: %w", err)
	}
	return nil
}
