package cache

import (
	"fmt"
	"time"

	"github.com/warmcache/warmcache/internal/human"
)

// Describe is the job-log line for one claimed cache volume.
func Describe(s Status, now time.Time) string {
	head := fmt.Sprintf("Cache %s %s", s.Profile, s.Path)
	used := ""
	if !s.Record.LastUsed.IsZero() {
		used = ", last used " + human.Ago(s.Record.LastUsed, now)
	}
	switch {
	case !s.Warm:
		return fmt.Sprintf("%s: cold (new volume %s)", head, s.Name)
	case s.Record.Measured.IsZero():
		return fmt.Sprintf("%s: warm, size not measured yet%s (%s)", head, used, s.Name)
	default:
		return fmt.Sprintf("%s: warm, %s%s (%s)", head, human.Bytes(s.Record.SizeBytes), used, s.Name)
	}
}
