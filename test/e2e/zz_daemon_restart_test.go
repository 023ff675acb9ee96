package e2e

// This file sorts last on purpose: its test restarts the Docker engine.

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDaemonRestartMidJob: a daemon restart in the middle of a job (which
// stops the job's containers) fails that job's next stage as a system
// failure with one clear line; cleanup still works, and the next job runs.
func TestDaemonRestartMidJob(t *testing.T) {
	j := newJob(t, jobSpec{})
	if r := j.prepare(); r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if r := j.run("build_script", runnerScript("echo before the restart\n")); r.Code != 0 {
		t.Fatalf("build_script: %s", r)
	}
	restartDockerd(t)

	r := j.run("build_script", runnerScript("echo after the restart\n"))
	if r.Code != systemFailureCode || strings.Count(r.Stderr, "\n") != 1 ||
		!strings.Contains(r.Stderr, "the build container of this job is gone or stopped (daemon restart") {
		t.Errorf("stage after a daemon restart: want exit %d and one line, got %s", systemFailureCode, r)
	}
	if r := j.cleanup(); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	next := newJob(t, jobSpec{})
	if r := next.prepare(); r.Code != 0 {
		t.Fatalf("next job's prepare: %s", r)
	}
	if r := next.run("build_script", runnerScript("echo next job\n")); r.Code != 0 || r.Stdout != "next job\n" {
		t.Errorf("next job: %s", r)
	}
}

// restartDockerd stops the engine the way a host restart or an upgrade
// does (SIGTERM to dockerd) and starts it again the way scripts/setup-host.sh
// does, waiting for it to answer.
func restartDockerd(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile("/var/run/docker.pid")
	if err != nil {
		t.Fatalf("this test restarts dockerd and needs its pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stopping dockerd: %v", err)
	}
	// Wait for the old daemon to be gone: its pid stops answering signal 0.
	deadline := time.Now().Add(2 * time.Minute)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("dockerd did not stop within 2 minutes")
		}
		time.Sleep(100 * time.Millisecond) // polling the process, not synchronising with it
	}
	log, err := os.OpenFile("/var/log/warmcache-dockerd.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("dockerd")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dockerd: %v", err)
	}
	cmd.Process.Release()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := eng.Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not come back within 2 minutes: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling the engine until it answers
	}
}
