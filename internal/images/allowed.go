package images

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"
)

// Allowed says whether the image ref may run under an allow-list of
// patterns (docker.allowed_images, allowed_services and the privileged
// ones), matched as the Docker executor matches them: an empty list
// allows every image; otherwise ref, as the job spells it, must match
// one pattern, where "*" stops at "/" and "**" crosses it
// ("registry.example.com/**"), with {a,b}, [a-z] and ? as doublestar
// reads them.
func Allowed(ref string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := doublestar.Match(p, ref); ok {
			return true
		}
	}
	return false
}

// NotAllowed is the job-log line for an image (what: "image",
// "service") that the allow-list under key refuses.
func NotAllowed(what, ref, key string, patterns []string) string {
	return fmt.Sprintf("%s %q is not allowed by %s (allowed: %s)", what, ref, key, QuoteList(patterns))
}

// QuoteList spells an allow-list for the job log: `"a", "b"`.
func QuoteList(list []string) string {
	quoted := make([]string, len(list))
	for i, s := range list {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(quoted, ", ")
}

// Privileged decides whether a container of image ref runs privileged,
// as the Docker executor does: only when the config asks for it (want)
// and ref is in the allow-list under key (empty: every image). An image
// outside the list is not refused: its container runs unprivileged, and
// note is the job-log line that says so ("" otherwise).
func Privileged(want bool, what, ref, key string, patterns []string) (privileged bool, note string) {
	if !want {
		return false, ""
	}
	if Allowed(ref, patterns) {
		return true, ""
	}
	return false, fmt.Sprintf("WARNING: %s %q runs unprivileged: it is not in %s (allowed: %s)", what, ref, key, QuoteList(patterns))
}
