package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrate: the built binary's migrate output for a dind and a
// socket-binding runner, saved as it is, passes the config stage of the
// same binary, and its [runners.custom] block points at that binary.
func TestMigrate(t *testing.T) {
	for _, fixture := range []string{"dind.toml", "socket.toml"} {
		t.Run(fixture, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "warmcache.toml")
			stdout, stderr, err := runBinary(t, "--config", out, "migrate", "--from", filepath.Join("../../internal/migrate/testdata", fixture))
			if err != nil {
				t.Fatalf("migrate: %v; stderr %s", err, stderr)
			}
			if !strings.Contains(stdout, `#     cleanup_exec = "`+driverBin+`"`) {
				t.Errorf("the block does not name %s:\n%s", driverBin, stdout)
			}
			if !strings.Contains(stderr, "runners.docker.volumes") {
				t.Errorf("stderr says nothing of volumes (carried in part or not at all):\n%s", stderr)
			}
			if err := os.WriteFile(out, []byte(stdout), 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, err = runBinary(t, "--config", out, "config")
			var cfg struct {
				BuildsDir string `json:"builds_dir"`
			}
			if err != nil || json.Unmarshal([]byte(stdout), &cfg) != nil || cfg.BuildsDir != "/builds" {
				t.Errorf("config stage on the migrated file: %v, stdout %q, stderr %q", err, stdout, stderr)
			}
		})
	}
}

func runBinary(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(driverBin, args...)
	cmd.Env = append(os.Environ(), "WARMCACHE_CONFIG=")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}
