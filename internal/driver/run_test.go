package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/protocol"
)

// prepared returns a harness whose job containers are running.
func prepared(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, nil)
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	h.stderr.Reset()
	return h
}

// execRecord is one Exec the fake ran.
type execRecord struct {
	name  string
	cmd   []string
	stdin string
}

func recordExecs(h *harness, exit engine.Exit) *[]execRecord {
	var execs []execRecord
	h.f.SetExec(func(name string, cmd []string, stdin []byte) (engine.Exit, string, string) {
		execs = append(execs, execRecord{name, cmd, string(stdin)})
		return exit, "out of " + name + "\n", "err of " + name + "\n"
	})
	return &execs
}

func TestRunRoutesStages(t *testing.T) {
	h := prepared(t)
	execs := recordExecs(h, engine.Exit{})
	const script = "#!/usr/bin/env bash\necho hello\n"
	path := writeFile(t, "script", script)
	stages := []string{
		"prepare_script", "get_sources", "clear_worktree", "restore_cache", "download_artifacts",
		"build_script", "step_release", "after_script",
		"archive_cache", "archive_cache_on_failure", "upload_artifacts_on_success", "upload_artifacts_on_failure",
		"cleanup_file_variables", "some_future_stage",
	}
	for _, stage := range stages {
		*execs = nil
		h.stdout.Reset()
		h.stderr.Reset()
		if err := Run(context.Background(), h.deps(), path, stage); err != nil {
			t.Fatalf("Run(%s): %v", stage, err)
		}
		target := protocol.Target(stage)
		name := sampleKey.Name(target)
		want := []execRecord{{name, stageCommand(target), script}}
		if !reflect.DeepEqual(*execs, want) {
			t.Errorf("Run(%s) execs = %+v, want %+v", stage, *execs, want)
		}
		if h.stdout.String() != "out of "+name+"\n" || h.stderr.String() != "err of "+name+"\n" {
			t.Errorf("Run(%s): stdout %q, stderr %q, want the container's streams", stage, h.stdout, h.stderr)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	path := writeFile(t, "script", "exit 3\n")
	t.Run("non-zero exit is a build failure with the code", func(t *testing.T) {
		h := prepared(t)
		recordExecs(h, engine.Exit{Code: 3})
		err := Run(context.Background(), h.deps(), path, "build_script")
		var bf *protocol.BuildFailure
		if !errors.As(err, &bf) || *bf != (protocol.BuildFailure{Code: 3}) {
			t.Fatalf("Run = %#v, want &protocol.BuildFailure{Code: 3}", err)
		}
		file := filepath.Join(t.TempDir(), "build_exit_code")
		env := map[string]string{"BUILD_FAILURE_EXIT_CODE": "7", "SYSTEM_FAILURE_EXIT_CODE": "9", "BUILD_EXIT_CODE_FILE": file}
		code, err := protocol.ExitCode(err, func(k string) string { return env[k] })
		data, _ := os.ReadFile(file)
		if code != 7 || err != nil || string(data) != "3\n" {
			t.Errorf("ExitCode = %d, %v, file %q; want 7, nil, \"3\\n\"", code, err, data)
		}
	})
	t.Run("a killed script (137) is a build failure too", func(t *testing.T) {
		h := prepared(t)
		recordExecs(h, engine.Exit{Code: 137})
		err := Run(context.Background(), h.deps(), path, "build_script")
		var bf *protocol.BuildFailure
		if !errors.As(err, &bf) || bf.Code != 137 {
			t.Fatalf("Run = %v, want a build failure with code 137", err)
		}
	})

	build := sampleKey.Name(naming.KindBuild)
	tests := []struct {
		name    string
		break_  func(h *harness)
		wantErr string
		is      error
	}{
		{
			name:   "stopped container",
			break_: func(h *harness) { h.f.Stop(build) },
			wantErr: "the build container of this job is gone or stopped (daemon restart, or an image entrypoint that does not exec its arguments): " +
				"exec in " + build + ": container is not running",
			is: engine.ErrNotRunning,
		},
		{
			name: "removed container",
			break_: func(h *harness) {
				if err := h.f.Remove(context.Background(), engine.Resource{Type: engine.Container, Name: build}); err != nil {
					panic(err)
				}
			},
			wantErr: "the build container of this job is gone or stopped (daemon restart, or an image entrypoint that does not exec its arguments): " +
				"exec in " + build + ": not found",
			is: engine.ErrNotFound,
		},
		{
			name:    "engine error",
			break_:  func(h *harness) { h.f.FailNext(fake.MethodExec, errors.New("connection reset")) },
			wantErr: "running stage build_script: connection reset",
		},
		{
			name:    "job response missing",
			break_:  func(h *harness) { delete(h.env, "JOB_RESPONSE_FILE") },
			wantErr: "JOB_RESPONSE_FILE is not set: warmcache stages must be started by gitlab-runner's custom executor",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := prepared(t)
			tt.break_(h)
			err := Run(context.Background(), h.deps(), path, "build_script")
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Run = %v, want %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not wrap %v", tt.is)
			}
			// A system failure, whatever the script would have done.
			env := map[string]string{"BUILD_FAILURE_EXIT_CODE": "7", "SYSTEM_FAILURE_EXIT_CODE": "9"}
			if code, _ := protocol.ExitCode(err, func(k string) string { return env[k] }); code != 9 {
				t.Errorf("exit code %d, want the system failure code 9", code)
			}
		})
	}
}

func TestRunMissingScript(t *testing.T) {
	h := prepared(t)
	missing := filepath.Join(t.TempDir(), "script")
	err := Run(context.Background(), h.deps(), missing, "build_script")
	want := "opening stage script: open " + missing + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("Run = %v, want %q", err, want)
	}
	if slices.Contains(methods(h.f, ""), "Exec") {
		t.Error("Exec called without a script")
	}
}

func TestRunCancelSignalsTheStage(t *testing.T) {
	h := prepared(t)
	build := sampleKey.Name(naming.KindBuild)
	killed := make(chan struct{})
	signals := 0
	var cmds [][]string
	h.f.SetExec(func(name string, cmd []string, stdin []byte) (engine.Exit, string, string) {
		if slices.Equal(cmd, []string{"sh", "-c", "kill -TERM -1"}) {
			signals++
			if signals == 1 {
				close(killed)
			}
			return engine.Exit{}, "", ""
		}
		cmds = append(cmds, cmd)
		<-killed // the script runs until it gets SIGTERM
		return engine.Exit{Code: 143}, "", ""
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the runner sent SIGTERM
	err := Run(ctx, h.deps(), writeFile(t, "script", "sleep 1000\n"), "build_script")

	var bf *protocol.BuildFailure
	if !errors.As(err, &bf) || bf.Code != 143 {
		t.Fatalf("Run = %v, want the script's own exit (143) once it ended", err)
	}
	if got := methods(h.f, build); !slices.Equal(got, []string{"CreateContainer", "StartContainer", "Exec", "Exec", "Exec"}) {
		t.Errorf("calls on %s = %v, want the stage exec, the SIGTERM exec and the second SIGTERM round", build, got)
	}
	if signals != 2 {
		t.Errorf("SIGTERM rounds = %d, want 2", signals)
	}
	if len(cmds) != 1 || !slices.Equal(cmds[0], stageCommand(naming.KindBuild)) {
		t.Errorf("stage commands = %q", cmds)
	}
	if want := []string{"Job cancelled: sending SIGTERM to the build_script stage's processes"}; !slices.Equal(h.stderrLines(), want) {
		t.Errorf("job log = %q, want %q", h.stderrLines(), want)
	}
}
