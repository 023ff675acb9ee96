package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestRegisterCommand: the printed command, run by a shell, gives
// gitlab-runner exactly the flags of the custom executor for this binary
// and config; the config.toml entry says the same.
func TestRegisterCommand(t *testing.T) {
	setCodes(t)
	conf, err := filepath.Abs("testdata/valid.toml")
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runMain("--config", conf, "register", "--url", "https://gitlab.example.com/", "--token", "glrt-a b'c$x")
	if code != 0 {
		t.Fatalf("register: code %d, stderr %q", code, stderr)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(stdout, "gitlab-runner register")
	end := strings.Index(stdout, "\n\n")
	if start < 0 || end < start {
		t.Fatalf("no command in:\n%s", stdout)
	}
	script := "gitlab-runner() { printf '%s\\n' \"$@\"; }\n" + stdout[start:end]
	out, err := exec.Command("bash", "-c", script).Output()
	if err != nil {
		t.Fatalf("the command does not run in bash: %v\n%s", err, script)
	}
	want := []string{"register", "--non-interactive", "--url", "https://gitlab.example.com/", "--token", "glrt-a b'c$x",
		"--description", "warmcache", "--executor", "custom", "--limit", "1"}
	for _, stage := range []string{"config", "prepare", "run", "cleanup"} {
		want = append(want, "--custom-"+stage+"-exec", exe,
			"--custom-"+stage+"-args=--config", "--custom-"+stage+"-args="+conf, "--custom-"+stage+"-args="+stage)
	}
	want = append(want, "--custom-config-exec-timeout", "60", "--custom-prepare-exec-timeout", "3600",
		"--custom-cleanup-exec-timeout", "360", "--custom-graceful-kill-timeout", "60", "--custom-force-kill-timeout", "10")
	if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("gitlab-runner gets\n%q\nwant\n%q", got, want)
	}

	_, entry, ok := strings.Cut(stdout, "# concurrent = 1\n")
	if !ok {
		t.Fatalf("no concurrent line in:\n%s", stdout)
	}
	var file struct {
		Runners []struct {
			Name, URL, Token, Executor string
			Limit                      int
			Custom                     map[string]any
		}
	}
	if _, err := toml.Decode(entry, &file); err != nil || len(file.Runners) != 1 {
		t.Fatalf("the entry does not decode: %v\n%s", err, entry)
	}
	r := file.Runners[0]
	if r.Name != "warmcache" || r.URL != "https://gitlab.example.com/" || r.Token != "glrt-a b'c$x" || r.Executor != "custom" || r.Limit != 1 {
		t.Errorf("entry: %+v", r)
	}
	if r.Custom["cleanup_exec_timeout"] != int64(360) || r.Custom["run_exec"] != exe ||
		!reflect.DeepEqual(r.Custom["prepare_args"], []any{"--config", conf, "prepare"}) {
		t.Errorf("[runners.custom]: %v", r.Custom)
	}
}

// Without --url and --token the command leaves them to the shell.
func TestRegisterDefaults(t *testing.T) {
	setCodes(t)
	code, stdout, _ := runMain("--config", "testdata/valid.toml", "register")
	if code != 0 || !strings.Contains(stdout, "  --url \"$CI_SERVER_URL\" \\\n  --token \"$CI_SERVER_TOKEN\" \\\n") {
		t.Errorf("code %d:\n%s", code, stdout)
	}
}
