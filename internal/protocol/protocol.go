// Package protocol is how gitlab-runner drives a custom executor, as
// warmcache implements it (docs/protocol.md): the environment variables
// the runner hands every stage, the config stage's JSON, the exit codes,
// and the run stages' names with the container that runs each. It holds
// what the runner expects; how warmcache does it lives in package driver.
package protocol

// Environment variables gitlab-runner sets for every prepare, run and
// cleanup call.
const (
	// EnvJobResponseFile names the job payload, a JSON file the job
	// cannot change: whatever isolates one project or ref from another
	// comes from it.
	EnvJobResponseFile = "JOB_RESPONSE_FILE"
	// EnvBuildFailureExitCode and EnvSystemFailureExitCode hold the exit
	// codes that mean "the job's script failed" and "the runner's system
	// failed" (1 and 2 today; never hard-coded).
	EnvBuildFailureExitCode  = "BUILD_FAILURE_EXIT_CODE"
	EnvSystemFailureExitCode = "SYSTEM_FAILURE_EXIT_CODE"
	// EnvBuildExitCodeFile names the file that gets a failed script's own
	// exit code.
	EnvBuildExitCodeFile = "BUILD_EXIT_CODE_FILE"
)

// CustomEnvPrefix starts the name of every job variable the runner
// passes, CUSTOM_ENV_<KEY>. The job's YAML can set any of them.
const CustomEnvPrefix = "CUSTOM_ENV_"

// Job variables warmcache reads from the environment, for convenience and
// readable names only.
const (
	// EnvJobImage is the job's image, for a response that names none.
	EnvJobImage = CustomEnvPrefix + "CI_JOB_IMAGE"
	// EnvJobServices is a JSON array of {"name", "alias", "entrypoint",
	// "command", "variables"}, for a response without services.
	EnvJobServices      = CustomEnvPrefix + "CI_JOB_SERVICES"
	EnvRunnerShortToken = CustomEnvPrefix + "CI_RUNNER_SHORT_TOKEN"
	EnvRunnerID         = CustomEnvPrefix + "CI_RUNNER_ID"
	// EnvRunnerVersion picks the official helper image's tag.
	EnvRunnerVersion = CustomEnvPrefix + "CI_RUNNER_VERSION"
	// EnvConcurrentID is the job's concurrency slot on this runner.
	EnvConcurrentID = CustomEnvPrefix + "CI_CONCURRENT_ID"
	// EnvConcurrentProjectID is the job's concurrency slot among the
	// running jobs of its project: the warm git checkout's slot.
	EnvConcurrentProjectID = CustomEnvPrefix + "CI_CONCURRENT_PROJECT_ID"
	// EnvProjectDir is where get_sources puts the project's checkout:
	// builds_dir/<namespace>/<project>, or GIT_CLONE_PATH.
	EnvProjectDir = CustomEnvPrefix + "CI_PROJECT_DIR"
)

// Directories the job sees inside its containers, told to the runner by
// the config stage.
const (
	BuildsDir = "/builds"
	CacheDir  = "/cache"
	// GitStoreDir is where a warm git checkout's object store is mounted,
	// read-only, in both job containers: the checkouts' alternates name
	// it, so the path is the same everywhere and outside builds_dir (the
	// runner's chown -R of builds_dir must not meet a read-only mount).
	GitStoreDir = "/var/cache/warmcache/git"
)

// ConfigOutput is the config stage's answer to gitlab-runner: one JSON
// object, and nothing else, on its stdout.
type ConfigOutput struct {
	BuildsDir         string            `json:"builds_dir"`
	CacheDir          string            `json:"cache_dir"`
	BuildsDirIsShared bool              `json:"builds_dir_is_shared"`
	Hostname          string            `json:"hostname"`
	Driver            Driver            `json:"driver"`
	JobEnv            map[string]string `json:"job_env,omitempty"`
	Shell             string            `json:"shell"`
}

// Driver names the driver in the job log.
type Driver struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}
