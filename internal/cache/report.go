package cache

import (
	"fmt"
	"time"
)

// Describe is the job-log line for one claimed cache volume.
func Describe(s Status, now time.Time) string {
	head := fmt.Sprintf("Cache %s %s", s.Profile, s.Path)
	used := ""
	if !s.Record.LastUsed.IsZero() {
		used = ", last used " + Ago(s.Record.LastUsed, now)
	}
	switch {
	case !s.Warm:
		return fmt.Sprintf("%s: cold (new volume %s)", head, s.Name)
	case s.Record.Measured.IsZero():
		return fmt.Sprintf("%s: warm, size not measured yet%s (%s)", head, used, s.Name)
	default:
		return fmt.Sprintf("%s: warm, %s%s (%s)", head, Bytes(s.Record.SizeBytes), used, s.Name)
	}
}

// Bytes formats a size for people.
func Bytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / 1024
	exp := 0
	// Move up a unit when rounding to one decimal would print 1024.0.
	for v >= 1023.95 && exp < 5 {
		v /= 1024
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}

// Ago formats how long before now t was.
func Ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := max(now.Sub(t), 0) // clock skew between hosts: not "-3s ago"
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}
