package e2e

import (
	"bufio"
	"bytes"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCancelRunningStep: when the runner cancels a job it sends SIGTERM to
// the driver's process group; the step's processes in the container get
// SIGTERM, the driver returns once they end, and after_script and cleanup
// still work, also when PID 1 is an init-like parent (dumb-init in the
// official helper image, tini) rather than the keep-alive itself.
func TestCancelRunningStep(t *testing.T) {
	for name, entrypoint := range map[string][]string{
		"keep-alive is PID 1": nil,
		"init-like PID 1":     {"sh", "-c", `"$@"; echo init-like parent exiting`, "sh"},
	} {
		t.Run(name, func(t *testing.T) { cancelRunningStep(t, entrypoint) })
	}
}

func cancelRunningStep(t *testing.T, entrypoint []string) {
	j := newJob(t, jobSpec{Entrypoint: entrypoint})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	var stderr bytes.Buffer
	cmd, out := startStep(t, j, "trap 'echo step got SIGTERM; exit 143' TERM\nsleep 300 &\necho step started\nwait\n", &stderr)
	cancelled := time.Now()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(out)
	err := cmd.Wait()
	took := time.Since(cancelled)
	if !strings.Contains(string(rest), "step got SIGTERM") {
		t.Errorf("the step's process did not get SIGTERM; stdout after cancel %q, stderr %q", rest, stderr.String())
	}
	code := cmd.ProcessState.ExitCode()
	if code != buildFailureCode {
		t.Errorf("driver exit %d (%v), want the build failure code %d; stderr %q", code, err, buildFailureCode, stderr.String())
	}
	if took > 20*time.Second {
		t.Errorf("driver took %s to end after SIGTERM", took)
	}
	if r := j.run("after_script", runnerScript("echo after_script ran\n")); r.Code != 0 || r.Stdout != "after_script ran\n" {
		t.Errorf("after_script after cancel: %s", r)
	}
	// Zombies (already dead, not yet reaped by the keep-alive) do not count.
	if r := j.run("build_script", runnerScript("ps -e -o stat=,comm= | grep -v '^Z' | grep -c sleep || true\n")); r.Stdout != "0\n" {
		t.Errorf("processes of the cancelled step still run: %s", r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// TestDriverKilledMidStage: when the runner SIGKILLs the driver during a
// stage (its force-kill after the grace time), the stage's processes are
// orphaned in the container; cleanup still removes everything.
func TestDriverKilledMidStage(t *testing.T) {
	j := newJob(t, jobSpec{})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	cmd, _ := startStep(t, j, "echo step started\nsleep 300\n", io.Discard)
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup after SIGKILL: %s", r)
	}
	if left := jobResources(t, j); len(left) != 0 {
		t.Errorf("after cleanup the job still has %v", left)
	}
}

// startStep starts the run stage of a build_script whose body prints "step
// started" once it is really running, and returns once that line arrived,
// with the rest of the stage's stdout to read.
func startStep(t *testing.T, j *job, body string, stderr io.Writer) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	path, err := j.WriteScript(runnerScript(body))
	if err != nil {
		t.Fatal(err)
	}
	cmd := j.Command("run", path, "build_script")
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); err != nil || line != "step started\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	return cmd, out
}
