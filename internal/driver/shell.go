package driver

import (
	"strings"

	"github.com/warmcache/warmcache/internal/naming"
)

// shellCandidates is the Docker executor's shell search order: the first
// executable one reads the stage script from stdin.
var shellCandidates = []string{
	"/usr/local/bin/bash", "/usr/bin/bash", "/bin/bash",
	"/usr/local/bin/sh", "/usr/bin/sh", "/bin/sh", "/busybox/sh",
}

// detectShell is a POSIX sh program that execs the first shell found, so
// images with only /bin/sh or busybox work. It runs under `sh -c`.
var detectShell = func() string {
	var b strings.Builder
	for i, sh := range shellCandidates {
		if i == 0 {
			b.WriteString("if ")
		} else {
			b.WriteString("elif ")
		}
		b.WriteString("[ -x " + sh + " ]; then exec " + sh + "; ")
	}
	b.WriteString("else echo shell not found >&2; exit 1; fi")
	return b.String()
}()

// helperPrelude makes the name `gitlab-runner` resolve in helper images that
// ship the binary as gitlab-runner-helper (the official helper image), which
// the cache and artifact stages call by that exact name.
const helperPrelude = `if ! command -v gitlab-runner >/dev/null 2>&1; then ` +
	`h=$(command -v gitlab-runner-helper 2>/dev/null) && ln -sf "$h" /usr/local/bin/gitlab-runner 2>/dev/null; fi; `

// keepAlive is the main process of every job container: it blocks on the
// container's stdin (kept open, never written) so the container lives until
// cleanup, and it needs nothing but a POSIX shell.
// If stdin ever reaches end of file it falls back to sleeping. It ignores
// SIGTERM: a cancelled stage's processes are signalled with kill -1, which
// spares only PID 1, and under an init (dumb-init, tini) the keep-alive is
// not PID 1.
var keepAlive = []string{"sh", "-c", "trap '' TERM; while :; do read _ || sleep 3600 || exit 0; done"}

// stageCommand is the command one stage's script is piped into.
func stageCommand(target naming.Kind) []string {
	if target == naming.KindHelper {
		return []string{"sh", "-c", helperPrelude + detectShell}
	}
	return []string{"sh", "-c", detectShell}
}
