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

// stageCommand is the command one stage's script is piped into.
func stageCommand(target naming.Kind) []string {
	if target == naming.KindHelper {
		return []string{"sh", "-c", helperPrelude + detectShell}
	}
	return []string{"sh", "-c", detectShell}
}
