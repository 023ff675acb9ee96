package pkg

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// holder makes the throwaway system: in a private mount namespace, a tmpfs
// holds an overlay whose lower layer is this host's root; every write of
// the test (dpkg's database, the package's files, the maintainer scripts'
// directories) lands in the overlay's upper layer, on the tmpfs. /run and
// /tmp are empty tmpfs (so no systemd is reachable: the scripts see a host
// without a running systemd), and the .deb's directory is bound at
// /tmp/debs. The namespace ends with the holder, which waits for its stdin
// to close.
const holder = `set -eu
root=$1 debs=$2
mount -t tmpfs -o mode=0700 warmcache-pkgtest "$root"
mkdir "$root/upper" "$root/work" "$root/merged"
mount -t overlay overlay -o "lowerdir=/,upperdir=$root/upper,workdir=$root/work" "$root/merged"
m=$root/merged
mount -t proc proc "$m/proc"
mount --rbind /dev "$m/dev"
mount -t tmpfs tmpfs "$m/run"
mount -t tmpfs tmpfs "$m/tmp"
mkdir "$m/tmp/debs"
mount --bind "$debs" "$m/tmp/debs"
echo ready
read -r _ || true
`

// system is this host's root seen through a throwaway overlay: commands
// run in it with chroot, and nothing they do reaches the host.
type system struct {
	pid   string
	root  string // the tmpfs, in the holder's namespace
	nsbin string
}

// newSystem starts the holder; the overlay goes away in t.Cleanup (and
// with the test process, whatever happens: only the holder keeps it).
func newSystem(t *testing.T, debs string) *system {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the package test installs the package with dpkg in an overlay of this host's root: it needs root")
	}
	root := t.TempDir()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", holder, "sh", root, debs)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("overlay holder: %v: %s", err, stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("setting up the overlay: %q, %v: %s", line, err, stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatal(err)
	}
	return &system{pid: strconv.Itoa(cmd.Process.Pid), root: root, nsbin: nsenter}
}

// command is args run chrooted in the overlay, with a plain environment.
func (s *system) command(args ...string) *exec.Cmd {
	full := append([]string{"-t", s.pid, "-m", "--", "chroot", s.root + "/merged"}, args...)
	cmd := exec.Command(s.nsbin, full...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "HOME=/root"}
	return cmd
}

// run runs args in the overlay and returns stdout and stderr together;
// it fails the test when the command fails.
func (s *system) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.command(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ok reports whether args succeed in the overlay.
func (s *system) ok(args ...string) bool {
	return s.command(args...).Run() == nil
}

// changed lists what the test has changed on the system so far: the upper
// layer's files, symlinks and whiteouts, as absolute paths.
func (s *system) changed(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command(s.nsbin, "-t", s.pid, "-m", "--", "find", s.root+"/upper", "!", "-type", "d")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("listing the overlay's changes: %v", err)
	}
	var paths []string
	for _, p := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if p == "" {
			continue
		}
		paths = append(paths, strings.TrimPrefix(p, s.root+"/upper"))
	}
	return paths
}
