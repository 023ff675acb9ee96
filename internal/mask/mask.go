// Package mask replaces secret values in a stream of output with
// [MASKED], also when a secret arrives split across two writes.
package mask

import (
	"bytes"
	"io"
	"slices"
	"sync"
)

// Replacement is what a secret becomes.
const Replacement = "[MASKED]"

// Writer masks secrets in what is written through it before passing it on.
// It holds back the end of a write only while that end could still be the
// start of a secret, so output stays live; Flush passes on what is held
// back when the stream ends. Safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	w       io.Writer
	secrets [][]byte  // longest first, so an overlap masks the longer one
	first   [256]bool // first bytes of the secrets: only there can one start
	pending []byte
}

// New wraps w. Empty secrets are ignored; with none, writes pass through.
func New(w io.Writer, secrets []string) *Writer {
	m := &Writer{w: w}
	for _, s := range secrets {
		if s != "" && !slices.ContainsFunc(m.secrets, func(b []byte) bool { return string(b) == s }) {
			m.secrets = append(m.secrets, []byte(s))
		}
	}
	slices.SortStableFunc(m.secrets, func(a, b []byte) int { return len(b) - len(a) })
	for _, s := range m.secrets {
		m.first[s[0]] = true
	}
	return m
}

// Write masks p and writes what is certain to w. It reports len(p) when
// everything was either written or held back.
func (m *Writer) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.secrets) == 0 {
		return m.w.Write(p)
	}
	m.pending = append(m.pending, p...)
	out, rest := m.scan(m.pending, false)
	// Keep the held-back tail in a buffer of its own: pending's array is
	// reused by the next append.
	m.pending = append(m.pending[:0], rest...)
	if len(out) > 0 {
		if _, err := m.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what was held back as a possible start of a secret.
func (m *Writer) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.pending) == 0 {
		return nil
	}
	out, _ := m.scan(m.pending, true)
	m.pending = m.pending[:0]
	_, err := m.w.Write(out)
	return err
}

// scan masks every secret in buf, overlapping ones as one run. Unless
// final, it stops at the first position from which the rest of buf could
// still become (or extend) a masked run, and returns that rest to be held
// back.
func (m *Writer) scan(buf []byte, final bool) (out, rest []byte) {
	out = make([]byte, 0, len(buf))
	for i := 0; i < len(buf); {
		if !m.first[buf[i]] {
			// Copy up to the next byte a secret could start with at once.
			j := i + 1
			for j < len(buf) && !m.first[buf[j]] {
				j++
			}
			out = append(out, buf[i:j]...)
			i = j
			continue
		}
		if s := m.secretAt(buf[i:]); s != nil {
			// A secret that starts inside this one and ends after it
			// (two secrets overlapping in the output) is masked with it,
			// so no tail of it shows; one that may still be completing
			// holds the whole run back.
			end := i + len(s)
			for k := i; k < end; k++ {
				if t := m.secretAt(buf[k:]); t != nil && k+len(t) > end {
					end = k + len(t)
				}
				if !final && m.maybeSecret(buf[k:]) { // a longer one, too
					return out, buf[i:]
				}
			}
			out = append(out, Replacement...)
			i = end
			continue
		}
		if !final && m.maybeSecret(buf[i:]) {
			return out, buf[i:]
		}
		out = append(out, buf[i])
		i++
	}
	return out, nil
}

// secretAt returns the longest secret b starts with, or nil.
func (m *Writer) secretAt(b []byte) []byte {
	for _, s := range m.secrets {
		if bytes.HasPrefix(b, s) {
			return s
		}
	}
	return nil
}

// maybeSecret says whether b is a proper prefix of some secret.
func (m *Writer) maybeSecret(b []byte) bool {
	for _, s := range m.secrets {
		if len(b) < len(s) && bytes.HasPrefix(s, b) {
			return true
		}
	}
	return false
}

// String is s with every secret masked, as a Writer would pass it on.
func String(s string, secrets []string) string {
	var b bytes.Buffer
	m := New(&b, secrets)
	_, _ = m.Write([]byte(s)) // a bytes.Buffer takes everything
	_ = m.Flush()
	return b.String()
}
