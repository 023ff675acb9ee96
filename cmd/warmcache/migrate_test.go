package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fixtures = "../../internal/migrate/testdata/"

// TestMigrateCommand: migrate's stdout, saved as it is, passes the config
// stage; stderr names what was not carried; the block points at the
// config file --config names and at this binary.
func TestMigrateCommand(t *testing.T) {
	for _, fixture := range []string{"example.toml", "advanced.toml", "dind.toml", "socket.toml", "allowlist.toml"} {
		t.Run(fixture, func(t *testing.T) {
			setCodes(t)
			out := filepath.Join(t.TempDir(), "warmcache.toml")
			code, stdout, stderr := runMain("--config", out, "migrate", "--from", fixtures+fixture)
			if code != 0 {
				t.Fatalf("migrate: code %d, stderr %q", code, stderr)
			}
			if !strings.Contains(stderr, "runners.docker.image: carried as docker.default_image") {
				t.Errorf("stderr: %q", stderr)
			}
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			if want := `#     prepare_args = ["--config", "` + out + `", "prepare"]` + "\n"; !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
			if want := `#     run_exec = "` + exe + `"` + "\n"; !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
			if err := os.WriteFile(out, []byte(stdout), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr = runMain("--config", out, "config")
			if code != 0 || stderr != "" || !strings.Contains(stdout, `"builds_dir":"/builds"`) {
				t.Errorf("config stage on the migrated file: code %d, stdout %q, stderr %q", code, stdout, stderr)
			}
		})
	}
}

// TestMigrateErrors: a file or runner problem is one line and exit code
// 1, whatever the runner's exit-code variables say.
func TestMigrateErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[[runners]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.toml")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"migrate", "--from", missing}, "reading runner config: open " + missing + ": no such file or directory"},
		{"no --from", []string{"migrate"}, "migrate needs --from FILE, gitlab-runner's config.toml"},
		{"not TOML", []string{"migrate", "--from", bad}, bad + ": expected end of table array name delimiter ']', but got '\\n' instead"},
		{"unknown runner", []string{"migrate", "--from", fixtures + "example.toml", "--runner", "nope"},
			fixtures + `example.toml has no runner named "nope"; its runners: "shell" (shell), "ruby-3.1-docker" (docker), "production-server" (ssh)`},
		{"ambiguous", []string{"migrate", "--from", fixtures + "s3.toml"},
			fixtures + `s3.toml has 2 docker runners ("s3-cached", "spare"); choose one with --runner NAME`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setCodes(t)
			code, stdout, stderr := runMain(tc.args...)
			if code != 1 || stdout != "" || stderr != "warmcache: "+tc.want+"\n" {
				t.Errorf("code %d, stdout %q, stderr %q\nwant 1, nothing, %q", code, stdout, stderr, "warmcache: "+tc.want+"\n")
			}
		})
	}
}
