package protocol

import "testing"

// TestNames pins the names to the runner's spelling: a typo here would
// read an unset variable and fall back silently.
func TestNames(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{EnvJobResponseFile, "JOB_RESPONSE_FILE"},
		{EnvBuildFailureExitCode, "BUILD_FAILURE_EXIT_CODE"},
		{EnvSystemFailureExitCode, "SYSTEM_FAILURE_EXIT_CODE"},
		{EnvBuildExitCodeFile, "BUILD_EXIT_CODE_FILE"},
		{CustomEnvPrefix, "CUSTOM_ENV_"},
		{EnvJobImage, "CUSTOM_ENV_CI_JOB_IMAGE"},
		{EnvJobServices, "CUSTOM_ENV_CI_JOB_SERVICES"},
		{EnvRunnerShortToken, "CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN"},
		{EnvRunnerID, "CUSTOM_ENV_CI_RUNNER_ID"},
		{EnvRunnerVersion, "CUSTOM_ENV_CI_RUNNER_VERSION"},
		{EnvConcurrentID, "CUSTOM_ENV_CI_CONCURRENT_ID"},
		{EnvConcurrentProjectID, "CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID"},
		{BuildsDir, "/builds"},
		{CacheDir, "/cache"},
	} {
		if tt.got != tt.want {
			t.Errorf("%q, want %q", tt.got, tt.want)
		}
	}
}
