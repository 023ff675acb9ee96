package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/config"
)

func TestDebVersion(t *testing.T) {
	for _, tc := range []struct{ describe, want string }{
		{"v1.2.0", "1.2.0"},
		{"1.2.0", "1.2.0"},
		{"v1.2.0-3-gabc1234", "1.2.0+3.gabc1234"},
		{"v1.2.0-3-gabc1234-dirty", "1.2.0+3.gabc1234.dirty"},
		{"v1.2.0-rc1", "1.2.0+rc1"},
		{"1f2db66", "0+1f2db66"},
		{"abc1234-dirty", "0+abc1234.dirty"},
		{"dev", "0+dev"},
	} {
		got, err := debVersion(tc.describe)
		if err != nil || got != tc.want {
			t.Errorf("debVersion(%q) = %q, %v; want %q", tc.describe, got, err, tc.want)
		}
	}
	if got, err := debVersion("v1.0_bad"); err == nil {
		t.Errorf("debVersion(v1.0_bad) = %q, want an error", got)
	}
}

func readme(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The package's config file loads with warmcache's own loader and, every
// key being commented out, gives exactly the defaults.
func TestConfigFileLoadsAsTheDefaults(t *testing.T) {
	data, err := configFile(readme(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, false)
	if err != nil {
		t.Fatalf("the packaged config does not load: %v", err)
	}
	if want := config.Default(); !reflect.DeepEqual(cfg, want) {
		t.Errorf("the packaged config loads as\n%+v\nwant the defaults\n%+v", cfg, want)
	}
	for _, line := range []string{"# host = \"unix:///var/run/docker.sock\"", "[cache.gc]", "# concurrent_jobs = 1"} {
		if !strings.Contains(string(data), "\n"+line) {
			t.Errorf("the packaged config has no line %q", line)
		}
	}
}

// The README's block, uncommented as it stands, is the defaults: what the
// package's file documents is what the binary does.
func TestReadmeConfigBlockIsTheDefaults(t *testing.T) {
	block, err := configBlock(readme(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(block)
	if err != nil {
		t.Fatalf("the README's config block does not load: %v", err)
	}
	// Naming docker.host in the file is the one thing the block changes:
	// DOCKER_HOST of the environment no longer applies.
	if !cfg.Docker.HostInFile {
		t.Error("the README's block sets docker.host, but the loader did not see it")
	}
	cfg.Docker.HostInFile = false
	// Naming log.file makes a file that does not open an error instead of
	// a fallback to stderr: the block names the default file.
	if !cfg.Log.FileInFile {
		t.Error("the README's block sets log.file, but the loader did not see it")
	}
	cfg.Log.FileInFile = false
	// "allowed_images = []" decodes as an empty list, the default is nil:
	// the same config, and the same when printed.
	if got, want := fmt.Sprintf("%+v", cfg), fmt.Sprintf("%+v", config.Default()); got != want {
		t.Errorf("the README's config block loads as\n%s\nwant the defaults\n%s", got, want)
	}
}

func TestCompletions(t *testing.T) {
	zsh := string(zshCompletion([]byte("#compdef $PROG\n\n_f() {}\n\ncompdef _cli_zsh_autocomplete $PROG\n")))
	if want := "#compdef warmcache\n\n_f() {}\n\ncompdef _cli_zsh_autocomplete warmcache\n_cli_zsh_autocomplete \"$@\"\n"; zsh != want {
		t.Errorf("zsh completion:\n%s\nwant\n%s", zsh, want)
	}
	if bash := string(bashCompletion([]byte("X"))); !strings.HasSuffix(bash, "\nPROG=warmcache\nX") {
		t.Errorf("bash completion: %q", bash)
	}
}
