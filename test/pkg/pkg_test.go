// Package pkg tests warmcache's Debian package (make deb) the way an admin
// installs it: dpkg -i of the built package on this host, then dpkg -r and
// dpkg -P, with every change made inside a throwaway overlay of the host's
// root (overlay_test.go), so that a warmcache installed on the host, by
// dpkg or by hand, is never overwritten or removed, and nothing is left.
package pkg

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

// units are the systemd units the package installs.
var units = []string{"warmcache-cache-gc.service", "warmcache-cache-gc.timer", "warmcache-reap.service", "warmcache-reap.timer"}

func TestDebianPackage(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(output(t, repo, "git", "describe", "--tags", "--always", "--dirty"))
	debs := t.TempDir()
	output(t, repo, "make", "--no-print-directory", "deb", "VERSION="+version, "DEB_DIR="+debs)
	found, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	if len(found) != 1 {
		t.Fatalf("make deb wrote %v to %s, want one .deb", found, debs)
	}
	deb := filepath.Base(found[0])
	debVersion := strings.TrimSpace(output(t, repo, "dpkg-deb", "--field", found[0], "Version"))

	s := newSystem(t, debs)
	s.run(t, "dpkg", "-i", "/tmp/debs/"+deb)

	// The packaged binary by its path: one installed by hand in
	// /usr/local/bin comes first on PATH.
	t.Run("version", func(t *testing.T) {
		if got, want := s.run(t, "/usr/bin/warmcache", "--version"), "warmcache version "+version+"\n"; got != want {
			t.Errorf("warmcache --version printed %q, want %q", got, want)
		}
		if got, want := s.run(t, "dpkg-query", "-W", "-f", "${Status} ${Version}", "warmcache"), "install ok installed "+debVersion; got != want {
			t.Errorf("dpkg-query: %q, want %q", got, want)
		}
		if !strings.Contains(deb, "_"+debVersion+"_") {
			t.Errorf("package file %s is not named for version %s", deb, debVersion)
		}
	})

	t.Run("config", func(t *testing.T) {
		conffiles := s.run(t, "dpkg-query", "-W", "-f", "${Conffiles}", "warmcache")
		for _, f := range []string{"/etc/warmcache/config.toml", "/etc/logrotate.d/warmcache"} {
			if !strings.Contains(conffiles, " "+f+" ") {
				t.Errorf("%s is not a conffile: %q", f, conffiles)
			}
		}
		// The installed binary loads the installed file (named, so it
		// must exist) and prints the config stage's JSON.
		if out := s.run(t, "/usr/bin/warmcache", "--config", "/etc/warmcache/config.toml", "config"); !strings.Contains(out, `"builds_dir":"/builds"`) {
			t.Errorf("warmcache config with the packaged file: %s", out)
		}
	})

	t.Run("directories", func(t *testing.T) {
		for dir, want := range map[string]string{
			"/var/lib/warmcache": "directory root:",
			"/var/log/warmcache": "directory root:",
		} {
			if got := s.run(t, "stat", "-c", "%F %U:%G", dir); !strings.HasPrefix(got, want) {
				t.Errorf("%s: %q, want %q...", dir, got, want)
			}
		}
	})

	t.Run("units", func(t *testing.T) {
		paths := make([]string, len(units))
		for i, u := range units {
			paths[i] = "/usr/lib/systemd/system/" + u
			checkUnit(t, s, u, s.run(t, "cat", paths[i]))
		}
		// systemd's own check where systemd is installed (it needs no
		// running systemd): syntax, known keys, ExecStart's binary.
		if s.ok("sh", "-c", "command -v systemd-analyze") {
			if out := s.run(t, append([]string{"systemd-analyze", "verify"}, paths...)...); out != "" {
				t.Errorf("systemd-analyze verify: %s", out)
			}
		} else {
			t.Log("no systemd-analyze on this host: the units were checked by parsing only")
		}
	})

	t.Run("completions and man page", func(t *testing.T) {
		if out := s.run(t, "bash", "-c", "source /usr/share/bash-completion/completions/warmcache && complete -p warmcache"); !strings.Contains(out, "_cli_bash_autocomplete warmcache") {
			t.Errorf("bash completion registers: %q", out)
		}
		out, err := s.command("/usr/bin/warmcache", "cache", "--generate-bash-completion").Output()
		if err != nil || !slices.Contains(strings.Fields(string(out)), "gc") {
			t.Errorf("completion candidates for `warmcache cache` on stdout: %q, %v", out, err)
		}
		if out := s.run(t, "sh", "-c", "zcat /usr/share/man/man8/warmcache.8.gz | head -1"); out != ".nh\n" {
			t.Errorf("man page starts %q", out)
		}
	})

	// Installing changes the package's own files, warmcache's directories
	// and what dpkg and its triggers keep: nothing else (gitlab-runner's
	// config above all).
	owned := strings.Split(s.run(t, "dpkg-query", "-L", "warmcache"), "\n")
	checkChanges(t, s.changed(t), owned)

	// Caches' records stay through remove and purge.
	s.run(t, "sh", "-c", "echo kept > /var/lib/warmcache/pkgtest-record")
	s.run(t, "dpkg", "-r", "warmcache")
	if s.ok("test", "-e", "/usr/bin/warmcache") {
		t.Error("dpkg -r left /usr/bin/warmcache")
	}
	if !s.ok("test", "-f", "/etc/warmcache/config.toml") {
		t.Error("dpkg -r removed the conffile; only purge does")
	}
	s.run(t, "dpkg", "-P", "warmcache")
	if s.ok("test", "-e", "/etc/warmcache/config.toml") {
		t.Error("dpkg -P left /etc/warmcache/config.toml")
	}
	if got := s.run(t, "cat", "/var/lib/warmcache/pkgtest-record"); got != "kept\n" {
		t.Errorf("/var/lib/warmcache after purge: %q", got)
	}
	if !s.ok("test", "-d", "/var/log/warmcache") {
		t.Error("dpkg -P removed /var/log/warmcache")
	}
	// After purge, none of the package's files is left.
	checkChanges(t, s.changed(t), nil)
}

// allowedChanges are the places, besides the package's own files, that
// installing and removing may change.
var allowedChanges = []string{
	"/var/lib/dpkg/", "/var/log/dpkg.log", "/var/cache/man/", // dpkg and man-db's trigger
	"/var/lib/warmcache/", "/var/log/warmcache/", // the maintainer scripts
}

func checkChanges(t *testing.T, changed, owned []string) {
	t.Helper()
	for _, p := range changed {
		if slices.Contains(owned, p) || slices.ContainsFunc(allowedChanges, func(a string) bool { return strings.HasPrefix(p, a) }) {
			continue
		}
		t.Errorf("the package changed %s", p)
	}
}

// unitKeys are the keys each section of our units may set: a misspelt key
// is one systemd ignores with only a warning in its journal.
var unitKeys = map[string][]string{
	"Unit":    {"Description", "Documentation", "After"},
	"Service": {"Type", "ExecStart", "Nice", "IOSchedulingClass"},
	"Timer":   {"OnCalendar", "RandomizedDelaySec"},
	"Install": {"WantedBy"},
}

// checkUnit parses a unit with go-systemd's parser (systemd's syntax) and
// checks what systemd would otherwise only warn about: sections and keys,
// a oneshot service whose ExecStart is the installed binary, a timer
// enabled by timers.target with its service installed.
func checkUnit(t *testing.T, s *system, name, text string) {
	t.Helper()
	opts, err := unit.Deserialize(strings.NewReader(text))
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	values := map[string]string{}
	for _, o := range opts {
		if !slices.Contains(unitKeys[o.Section], o.Name) {
			t.Errorf("%s: [%s] %s is not a key our units use", name, o.Section, o.Name)
		}
		values[o.Section+"."+o.Name] = o.Value
	}
	if values["Unit.Description"] == "" {
		t.Errorf("%s: no Description", name)
	}
	switch filepath.Ext(name) {
	case ".service":
		if values["Service.Type"] != "oneshot" {
			t.Errorf("%s: Type=%q, want oneshot", name, values["Service.Type"])
		}
		exe := strings.Fields(values["Service.ExecStart"])
		if len(exe) < 2 || exe[0] != "/usr/bin/warmcache" || !s.ok("test", "-x", exe[0]) {
			t.Errorf("%s: ExecStart=%q, want the installed /usr/bin/warmcache and a command", name, values["Service.ExecStart"])
		}
	case ".timer":
		if values["Timer.OnCalendar"] == "" || values["Install.WantedBy"] != "timers.target" {
			t.Errorf("%s: OnCalendar=%q WantedBy=%q", name, values["Timer.OnCalendar"], values["Install.WantedBy"])
		}
		if service := strings.TrimSuffix(name, ".timer") + ".service"; !slices.Contains(units, service) {
			t.Errorf("%s: no %s", name, service)
		}
	default:
		t.Errorf("%s: not a service or a timer", name)
	}
}

// output runs a host command in dir (building the package, reading git
// and the .deb): never anything that changes the host outside the
// repository's bin/ and the test's temporary directories.
func output(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
