package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/docker"
)

// setCodes gives the exit codes values other than the runner's usual 1
// and 2, so that a hard-coded code fails the tests, and clears what the
// host environment could add.
func setCodes(t *testing.T) {
	t.Setenv("BUILD_FAILURE_EXIT_CODE", "7")
	t.Setenv("SYSTEM_FAILURE_EXIT_CODE", "9")
	t.Setenv("BUILD_EXIT_CODE_FILE", "")
	t.Setenv("WARMCACHE_CONFIG", "")
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("JOB_RESPONSE_FILE", "")
}

func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(append([]string{"warmcache"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestConfigStage(t *testing.T) {
	setCodes(t)
	code, stdout, stderr := runMain("--config", "testdata/valid.toml", "config")
	if code != 0 || stderr != "" {
		t.Fatalf("code %d, stderr %q; want 0 and nothing", code, stderr)
	}
	var out struct {
		BuildsDir string `json:"builds_dir"`
		Driver    struct{ Name, Version string }
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.BuildsDir != "/builds" || out.Driver.Name != "warmcache" || out.Driver.Version != version {
		t.Errorf("stdout %q: %+v, %v", stdout, out, err)
	}
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "}\n") {
		t.Errorf("stdout %q is not one JSON line", stdout)
	}
}

func TestBadConfigFile(t *testing.T) {
	const want = `warmcache: config testdata/bad.toml: unknown key docker.pulll_policy; log.level: "verbose" is not one of debug, info, warn, error` + "\n"
	t.Run("named by --config", func(t *testing.T) {
		setCodes(t)
		code, stdout, stderr := runMain("--config", "testdata/bad.toml", "config")
		if code != 9 || stdout != "" || stderr != want {
			t.Errorf("code %d, stdout %q, stderr %q; want 9, nothing, %q", code, stdout, stderr, want)
		}
	})
	t.Run("named by WARMCACHE_CONFIG", func(t *testing.T) {
		setCodes(t)
		t.Setenv("WARMCACHE_CONFIG", "testdata/bad.toml")
		code, stdout, stderr := runMain("config")
		if code != 9 || stdout != "" || stderr != want {
			t.Errorf("code %d, stdout %q, stderr %q; want 9, nothing, %q", code, stdout, stderr, want)
		}
	})
	t.Run("--config wins over WARMCACHE_CONFIG", func(t *testing.T) {
		setCodes(t)
		t.Setenv("WARMCACHE_CONFIG", "testdata/bad.toml")
		if code, _, stderr := runMain("--config", "testdata/valid.toml", "config"); code != 0 {
			t.Errorf("code %d, stderr %q; want 0", code, stderr)
		}
	})
	t.Run("missing explicit file", func(t *testing.T) {
		setCodes(t)
		missing := filepath.Join(t.TempDir(), "missing.toml")
		code, stdout, stderr := runMain("--config", missing, "config")
		want := "warmcache: reading config: open " + missing + ": no such file or directory\n"
		if code != 9 || stdout != "" || stderr != want {
			t.Errorf("code %d, stdout %q, stderr %q; want 9, nothing, %q", code, stdout, stderr, want)
		}
	})
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		mention string
	}{
		{"unknown subcommand", []string{"--config", "testdata/valid.toml", "bogus"}, `unknown command "bogus": use config, prepare, run, cleanup, cache, reap, doctor, migrate or register`},
		{"unknown flag", []string{"--config", "testdata/valid.toml", "--bogus", "config"}, "flag provided but not defined: -bogus"},
		{"unknown flag on a command", []string{"--config", "testdata/valid.toml", "run", "--config", "x", "a", "b"}, "flag provided but not defined: -config"},
		{"run without its arguments", []string{"--config", "testdata/valid.toml", "run"}, "run needs 2 arguments, SCRIPT and STAGE; got 0"},
		{"run with one argument", []string{"--config", "testdata/valid.toml", "run", "script"}, "run needs 2 arguments, SCRIPT and STAGE; got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setCodes(t)
			code, stdout, stderr := runMain(tt.args...)
			if code != 9 {
				t.Errorf("code %d, want the system failure code 9", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "warmcache: ") || !strings.Contains(stderr, tt.mention) {
				t.Errorf("stderr %q, want one line naming %s", stderr, tt.mention)
			}
		})
	}
}

// panicWriter makes the config stage panic while it prints.
type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("boom") }

func TestPanicIsASystemFailure(t *testing.T) {
	setCodes(t)
	var stderr bytes.Buffer
	code := run([]string{"warmcache", "--config", "testdata/valid.toml", "config"}, panicWriter{}, &stderr)
	if code != 9 || stderr.String() != "warmcache: internal error: boom\n" {
		t.Errorf("code %d, stderr %q; want 9 and one line", code, stderr.String())
	}
}

// A detached helper command has no reader for its stderr: its failure goes
// to the structured log of the config file it is given.
func TestDetachedFailureIsLogged(t *testing.T) {
	setCodes(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "warmcache.log")
	cfg := filepath.Join(dir, "warmcache.toml")
	if err := os.WriteFile(cfg, []byte("[log]\nfile = \""+logFile+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noEngine := "unix://" + filepath.Join(dir, "no-engine.sock")
	code, _, _ := runMain("--config", cfg, "remove-job", "--host", noEngine, "--ended-at=2026-12-08T01:00:00Z", "job-1", "network:net-id-1")
	if code != 9 {
		t.Errorf("code %d, want the system failure code 9", code)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("no structured log: %v", err)
	}
	var entry struct {
		Level, Msg, Stage, Error string
		Args                     []string
	}
	if err := json.Unmarshal(data, &entry); err != nil {
		t.Fatalf("log %q is not one JSON entry: %v", data, err)
	}
	if entry.Level != "error" || entry.Stage != "remove-job" || !slices.Equal(entry.Args, []string{"job-1", "network:net-id-1"}) ||
		!strings.Contains(entry.Error, "removing network net-id-1") {
		t.Errorf("log entry %+v, want the failed removal of net-id-1", entry)
	}
}

// A stage hands its config file to the helper commands it starts, which
// do not get its environment; the optional default they find themselves.
func TestDetachedArgs(t *testing.T) {
	args := []string{"remove-job", "--host", "unix:///x.sock", "job-1", "network:id"}
	if got, want := detachedArgs("/etc/wc.toml", false, args), append([]string{"--config", "/etc/wc.toml"}, args...); !slices.Equal(got, want) {
		t.Errorf("explicit config: %q, want %q", got, want)
	}
	if got := detachedArgs("/etc/warmcache/config.toml", true, args); !slices.Equal(got, args) {
		t.Errorf("optional default: %q, want %q", got, args)
	}
}

// The stages' starter names the hidden commands, the engine and the
// stage's config file on their command lines.
func TestStarterArgs(t *testing.T) {
	s := starter{configPath: "/etc/wc.toml", host: "unix:///x.sock"}
	for _, tc := range []struct {
		got, want []string
	}{
		{s.args(startContainerName, "build"), []string{"--config", "/etc/wc.toml", "start-container", "--host", "unix:///x.sock", "build"}},
		{s.args(removeJobName, "job-1", "container:c1", "network:net-id-1"), []string{"--config", "/etc/wc.toml", "remove-job", "--host", "unix:///x.sock", "job-1", "container:c1", "network:net-id-1"}},
		// A remote engine over TLS: the helper gets its certificates too.
		{starter{configPath: "/etc/wc.toml", host: "tcp://d:2376", engine: docker.Options{TLSVerify: true, CertPath: "/certs"}}.args(startContainerName, "build"),
			[]string{"--config", "/etc/wc.toml", "start-container", "--host", "tcp://d:2376", "--tls-verify", "--tls-cert-path", "/certs", "build"}},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("args %q, want %q", tc.got, tc.want)
		}
	}
}

// The command lines the starter builds run the hidden commands: here
// they fail, with no engine to reach, and say so in the structured log.
func TestStarterRunsTheHiddenCommands(t *testing.T) {
	for _, tc := range []struct {
		command string
		args    []string
		mention string
	}{
		{startContainerName, []string{"c1"}, "c1"},
		{removeJobName, []string{"--ended-at=2026-12-08T01:00:00Z", "job-1", "network:net-id-1"}, "removing network net-id-1"},
	} {
		t.Run(tc.command, func(t *testing.T) {
			setCodes(t)
			dir := t.TempDir()
			logFile := filepath.Join(dir, "warmcache.log")
			cfg := filepath.Join(dir, "warmcache.toml")
			if err := os.WriteFile(cfg, []byte("[log]\nfile = \""+logFile+"\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s := starter{configPath: cfg, host: "unix://" + filepath.Join(dir, "no-engine.sock")}
			if code, _, _ := runMain(s.args(tc.command, tc.args...)...); code != 9 {
				t.Errorf("code %d, want the system failure code 9", code)
			}
			data, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatalf("no structured log: %v", err)
			}
			var entry struct {
				Level, Msg, Stage, Error string
				Args                     []string
			}
			if err := json.Unmarshal(data, &entry); err != nil {
				t.Fatalf("log %q is not one JSON entry: %v", data, err)
			}
			positional := slices.DeleteFunc(slices.Clone(tc.args), func(a string) bool { return strings.HasPrefix(a, "--") })
			if entry.Level != "error" || entry.Stage != tc.command || !slices.Equal(entry.Args, positional) ||
				!strings.Contains(entry.Error, tc.mention) {
				t.Errorf("log entry %+v, want the failure of %s %q", entry, tc.command, tc.args)
			}
		})
	}
}

// remove-job reads the resources the starter spelled, a network by id.
func TestResourceArgs(t *testing.T) {
	for _, r := range []engine.Resource{
		{Type: engine.Container, Name: "warmcache-x-helper-ended-k2"},
		{Type: engine.Volume, Name: "warmcache-x-builds"},
		{Type: engine.Network, Name: "warmcache-x-network", ID: "4f2a"},
	} {
		got, err := parseResourceArg(resourceArg(r))
		want := r
		if r.ID != "" {
			want = engine.Resource{Type: r.Type, Name: r.ID}
		}
		if err != nil || got.Type != want.Type || got.Name != want.Name {
			t.Errorf("%+v: read back %+v, %v", r, got, err)
		}
	}
	for _, bad := range []string{"", "container", "container:", "image:x"} {
		if _, err := parseResourceArg(bad); err == nil {
			t.Errorf("parseResourceArg(%q) accepted", bad)
		}
	}
}
