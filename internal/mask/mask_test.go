package mask

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	const tok = "glcbt-secret-token"
	tests := []struct {
		name    string
		secrets []string
		writes  []string
		want    string
	}{
		{"no secrets pass through", nil, []string{"a", "b"}, "ab"},
		{"whole secret in one write", []string{tok}, []string{"token=" + tok + "\n"}, "token=[MASKED]\n"},
		{"secret split across two writes", []string{tok}, []string{"x " + tok[:7], tok[7:] + " y\n"}, "x [MASKED] y\n"},
		{"secret split into single bytes", []string{tok}, strings.Split(tok+"\n", ""), "[MASKED]\n"},
		{"twice in a row", []string{tok}, []string{tok + tok}, "[MASKED][MASKED]"},
		{"prefix that never completes is flushed", []string{tok}, []string{"x glcbt-sec"}, "x glcbt-sec"},
		{"false start then the secret", []string{"abcabd"}, []string{"abcab", "cabd!"}, "abc[MASKED]!"},
		{"overlapping secrets mask the longer", []string{"secret", "secret-longer"}, []string{"a secret-longer b secret c"}, "a [MASKED] b [MASKED] c"},
		{"two secrets", []string{"first-one", "second-one"}, []string{"first-", "one second", "-one"}, "[MASKED] [MASKED]"},
		{"empty secret ignored", []string{""}, []string{"abc"}, "abc"},
		{"binary output", []string{tok}, []string{"\x00\xff" + tok + "\x00"}, "\x00\xff[MASKED]\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			m := New(&buf, tc.secrets)
			for _, w := range tc.writes {
				n, err := m.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if err := m.Flush(); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tc.want {
				t.Errorf("got %q, want %q", buf.String(), tc.want)
			}
		})
	}
}

// TestWriterStaysLive: output that cannot start a secret is written at
// once; only a possible start of one is held back.
func TestWriterStaysLive(t *testing.T) {
	var buf bytes.Buffer
	m := New(&buf, []string{"topsecret"})
	m.Write([]byte("line one\nto"))
	if buf.String() != "line one\n" {
		t.Fatalf("after a write ending in a possible secret start, got %q", buf.String())
	}
	m.Write([]byte("day\n"))
	if buf.String() != "line one\ntoday\n" {
		t.Errorf("got %q", buf.String())
	}
}

// TestWriterEverySplit masks a secret whatever byte it is split at.
func TestWriterEverySplit(t *testing.T) {
	const s = "s3cr3t-value-123"
	text := "before " + s + " after"
	for i := 0; i <= len(text); i++ {
		var buf bytes.Buffer
		m := New(&buf, []string{s})
		m.Write([]byte(text[:i]))
		m.Write([]byte(text[i:]))
		m.Flush()
		if buf.String() != "before [MASKED] after" {
			t.Errorf("split at %d: got %q", i, buf.String())
		}
	}
}

func BenchmarkWriter(b *testing.B) {
	line := []byte(strings.Repeat("go: downloading example.com/some/module v1.2.3\n", 20))
	m := New(&bytes.Buffer{}, []string{"glcbt-NGMyZWMyNmI1ODdmODJk", "svc-token-1234567890"})
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		m.Write(line)
	}
}

// FuzzWriter: whatever the text and however it is split into writes, the
// output is the text with every occurrence of the secret masked.
// maskAll is the reference: the whole text at once, each run of
// overlapping secret occurrences (leftmost first, the longest there, then
// any occurrence starting inside the run and ending after it) masked as
// one.
func maskAll(text string, secrets []string) string {
	var out strings.Builder
	longestAt := func(i int) int {
		n := 0
		for _, s := range secrets {
			if s != "" && strings.HasPrefix(text[i:], s) && len(s) > n {
				n = len(s)
			}
		}
		return n
	}
	for i := 0; i < len(text); {
		n := longestAt(i)
		if n == 0 {
			out.WriteByte(text[i])
			i++
			continue
		}
		end := i + n
		for k := i + 1; k < end; k++ {
			if m := longestAt(k); k+m > end {
				end = k + m
			}
		}
		out.WriteString(Replacement)
		i = end
	}
	return out.String()
}

func FuzzWriter(f *testing.F) {
	f.Add("a secret-token b secret-tok", "secret-token", "", uint8(3), uint8(9))
	f.Add("ssssecret", "sssecret", "", uint8(1), uint8(2))
	f.Add("xxab12345yyzz", "xxab12345", "ab12345yyzz", uint8(4), uint8(11))
	f.Add("aaa", "aa", "", uint8(1), uint8(2))
	f.Fuzz(func(t *testing.T, text, secret1, secret2 string, cut1, cut2 uint8) {
		secrets := []string{secret1, secret2}
		i, j := int(cut1)%(len(text)+1), int(cut2)%(len(text)+1)
		if i > j {
			i, j = j, i
		}
		var buf bytes.Buffer
		m := New(&buf, secrets)
		for _, part := range []string{text[:i], text[i:j], text[j:]} {
			m.Write([]byte(part))
		}
		m.Flush()
		if want := maskAll(text, secrets); buf.String() != want {
			t.Errorf("text %q secrets %q cut at %d,%d: got %q, want %q", text, secrets, i, j, buf.String(), want)
		}
		// No secret survives, unless made of the replacement's own bytes.
		for _, s := range secrets {
			if s != "" && !strings.ContainsAny(s, Replacement) && strings.Contains(buf.String(), s) {
				t.Errorf("text %q: secret %q in the output %q", text, s, buf.String())
			}
		}
	})
}
