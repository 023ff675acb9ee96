package protocol

import (
	"strings"

	"github.com/warmcache/warmcache/internal/naming"
)

// StageRestoreCache is the runner's stage that restores the job's
// `cache:` archive (its duration is a metric).
const StageRestoreCache = "restore_cache"

// helperStages run in the helper container, as under the Docker executor;
// every other stage name, including ones a newer runner adds, runs in the
// build container.
var helperStages = map[string]bool{
	"prepare_script":              true,
	"get_sources":                 true,
	"clear_worktree":              true,
	"restore_cache":               true,
	"download_artifacts":          true,
	"archive_cache":               true,
	"archive_cache_on_failure":    true,
	"upload_artifacts_on_success": true,
	"upload_artifacts_on_failure": true,
	"cleanup_file_variables":      true,
}

// Target says which of the job's containers runs a run stage: the helper
// container for the runner's own work (sources, caches, artifacts), the
// build container for the job's steps, after_script and any stage name
// it does not know.
func Target(stage string) naming.Kind {
	if helperStages[stage] {
		return naming.KindHelper
	}
	return naming.KindBuild
}

// IsStep says whether a run stage is one of the job's steps:
// build_script or step_NAME.
func IsStep(stage string) bool {
	return stage == "build_script" || strings.HasPrefix(stage, "step_")
}

// StepStage names the run stage in which the runner runs the job's step
// named step in the job response: build_script for the script (which the
// response may call script or step_script), step_NAME for the others.
// after_script is no step: it runs after them, even after a failure, in
// a stage of its own; for it ok is false.
func StepStage(step string) (stage string, ok bool) {
	switch step {
	case "after_script":
		return "", false
	case "script", "step_script":
		return "build_script", true
	default:
		return "step_" + step, true
	}
}

// EndsSteps says whether stage is the last of the job's step stages
// (stages, in order, as StepStage names them; build_script when there
// are none), or a failing step: the runner runs no step after either.
func EndsSteps(stage string, failed bool, stages []string) bool {
	if !IsStep(stage) {
		return false
	}
	last := "build_script"
	if len(stages) > 0 {
		last = stages[len(stages)-1]
	}
	return failed || stage == last
}
