package protocol

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestExitCode(t *testing.T) {
	codes := map[string]string{"BUILD_FAILURE_EXIT_CODE": "7", "SYSTEM_FAILURE_EXIT_CODE": "9"}
	tests := []struct {
		name     string
		err      error
		env      map[string]string
		want     int
		wantFile string // "" means not written
	}{
		{"success", nil, codes, 0, ""},
		{"build failure writes its code", &BuildFailure{Code: 3}, codes, 7, "3\n"},
		{"wrapped build failure", fmt.Errorf("running stage: %w", &BuildFailure{Code: 137}), codes, 7, "137\n"},
		{"build failure without a code", &BuildFailure{Reason: "pull policy not allowed"}, codes, 7, ""},
		{"system failure", errors.New("docker engine unreachable"), codes, 9, ""},
		{"codes the runner uses today", &BuildFailure{Code: 3}, map[string]string{"BUILD_FAILURE_EXIT_CODE": "1", "SYSTEM_FAILURE_EXIT_CODE": "2"}, 1, "3\n"},
		{"build code missing from env", &BuildFailure{Code: 3}, nil, 1, "3\n"},
		{"system code missing from env", errors.New("x"), nil, 2, ""},
		{"codes with spaces", errors.New("x"), map[string]string{"SYSTEM_FAILURE_EXIT_CODE": " 9\n"}, 9, ""},
		{"code not a number", errors.New("x"), map[string]string{"SYSTEM_FAILURE_EXIT_CODE": "nine"}, 2, ""},
		{"code zero would mean success", errors.New("x"), map[string]string{"SYSTEM_FAILURE_EXIT_CODE": "0"}, 2, ""},
		{"code out of range", &BuildFailure{Code: 3}, map[string]string{"BUILD_FAILURE_EXIT_CODE": "256"}, 1, "3\n"},
		{"negative code", &BuildFailure{Code: 3}, map[string]string{"BUILD_FAILURE_EXIT_CODE": "-1"}, 1, "3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "build_exit_code")
			env := map[string]string{"BUILD_EXIT_CODE_FILE": file}
			for k, v := range tt.env {
				env[k] = v
			}
			got, err := ExitCode(tt.err, func(k string) string { return env[k] })
			if err != nil || got != tt.want {
				t.Fatalf("ExitCode = %d, %v; want %d", got, err, tt.want)
			}
			data, err := os.ReadFile(file)
			switch {
			case tt.wantFile == "" && err == nil:
				t.Errorf("BUILD_EXIT_CODE_FILE written: %q", data)
			case tt.wantFile != "" && string(data) != tt.wantFile:
				t.Errorf("BUILD_EXIT_CODE_FILE = %q (%v), want %q", data, err, tt.wantFile)
			}
		})
	}
}

func TestExitCodeFileProblems(t *testing.T) {
	codes := map[string]string{"BUILD_FAILURE_EXIT_CODE": "7", "SYSTEM_FAILURE_EXIT_CODE": "9"}
	// No file named: the build failure is still reported.
	got, err := ExitCode(&BuildFailure{Code: 3}, func(k string) string { return codes[k] })
	if got != 7 || err != nil {
		t.Errorf("without BUILD_EXIT_CODE_FILE: %d, %v; want 7, nil", got, err)
	}
	// An unwritable file is the system's failure, and says so.
	bad := filepath.Join(t.TempDir(), "missing-dir", "build_exit_code")
	codes["BUILD_EXIT_CODE_FILE"] = bad
	got, err = ExitCode(&BuildFailure{Code: 3}, func(k string) string { return codes[k] })
	want := "writing BUILD_EXIT_CODE_FILE: open " + bad + ": no such file or directory"
	if got != 9 || err == nil || err.Error() != want {
		t.Errorf("unwritable file: %d, %v; want 9, %q", got, err, want)
	}
}

func TestBuildFailureError(t *testing.T) {
	if got := (&BuildFailure{Code: 3}).Error(); got != "script exited with code 3" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&BuildFailure{Code: 3, Reason: "not allowed"}).Error(); got != "not allowed" {
		t.Errorf("Error() = %q", got)
	}
}
