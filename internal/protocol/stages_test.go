package protocol

import (
	"testing"

	"github.com/warmcache/warmcache/internal/naming"
)

func TestTarget(t *testing.T) {
	tests := []struct {
		stage string
		want  naming.Kind
	}{
		// docs/protocol.md, in the order the runner calls them.
		{"prepare_script", naming.KindHelper},
		{"get_sources", naming.KindHelper},
		{"clear_worktree", naming.KindHelper},
		{"restore_cache", naming.KindHelper},
		{"download_artifacts", naming.KindHelper},
		{"build_script", naming.KindBuild},
		{"step_script", naming.KindBuild},
		{"step_release", naming.KindBuild},
		{"after_script", naming.KindBuild},
		{"archive_cache", naming.KindHelper},
		{"archive_cache_on_failure", naming.KindHelper},
		{"upload_artifacts_on_success", naming.KindHelper},
		{"upload_artifacts_on_failure", naming.KindHelper},
		{"cleanup_file_variables", naming.KindHelper},
		// Names a newer runner may add run in the build container.
		{"some_future_stage", naming.KindBuild},
		{"", naming.KindBuild},
		{"GET_SOURCES", naming.KindBuild},
	}
	for _, tt := range tests {
		if got := Target(tt.stage); got != tt.want {
			t.Errorf("Target(%q) = %s, want %s", tt.stage, got, tt.want)
		}
	}
}

func TestIsStep(t *testing.T) {
	for _, tt := range []struct {
		stage string
		want  bool
	}{
		{"build_script", true},
		{"step_release", true},
		{"step_script", true},
		{"after_script", false},
		{"prepare_script", false},
		{"get_sources", false},
		{"archive_cache", false},
		{"upload_artifacts_on_failure", false},
		{"some_future_stage", false},
		{"", false},
		{"BUILD_SCRIPT", false},
	} {
		if got := IsStep(tt.stage); got != tt.want {
			t.Errorf("IsStep(%q) = %v, want %v", tt.stage, got, tt.want)
		}
	}
}

// TestStepStage: the job response's steps as run stages.
func TestStepStage(t *testing.T) {
	for _, tt := range []struct {
		step, stage string
		ok          bool
	}{
		{"script", "build_script", true},
		{"step_script", "build_script", true},
		{"release", "step_release", true},
		{"after_script", "", false},
	} {
		stage, ok := StepStage(tt.step)
		if stage != tt.stage || ok != tt.ok {
			t.Errorf("StepStage(%q) = %q, %v; want %q, %v", tt.step, stage, ok, tt.stage, tt.ok)
		}
		if ok && !IsStep(stage) {
			t.Errorf("IsStep(%q) = false for the stage of step %q", stage, tt.step)
		}
	}
}

// TestEndsSteps: the cache growth report comes once, after the last step
// or a failing one, whatever comes after the steps.
func TestEndsSteps(t *testing.T) {
	scriptRelease := []string{"build_script", "step_release"}
	for _, tc := range []struct {
		stage  string
		failed bool
		stages []string
		want   bool
	}{
		{"build_script", false, []string{"build_script"}, true},
		{"after_script", false, []string{"build_script"}, false},
		{"build_script", false, scriptRelease, false},
		{"build_script", true, scriptRelease, true},
		{"step_release", false, scriptRelease, true},
		{"build_script", false, nil, true},
		{"step_release", false, nil, false},
		{"archive_cache", false, []string{"build_script"}, false},
		{"archive_cache_on_failure", true, []string{"build_script"}, false},
	} {
		if got := EndsSteps(tc.stage, tc.failed, tc.stages); got != tc.want {
			t.Errorf("EndsSteps(%s, failed=%v, %q) = %v, want %v", tc.stage, tc.failed, tc.stages, got, tc.want)
		}
	}
}
