package admin

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
)

// entries are three hand-made entries for the output tests.
func entries() []cache.Entry {
	return []cache.Entry{
		{Volume: "warmcache-npm-0123456789ab", Instance: "gitlab.example.com", ProjectID: "2002", ProjectPath: "group/other",
			Profile: "npm", Path: "/root/.npm", Trust: "protected", SizeBytes: 1536, SizeKnown: true, LastUsed: t0.Add(-5 * time.Minute)},
		{Volume: "warmcache-go-abcdef012345", Instance: "gitlab.example.com", ProjectID: "1001", ProjectPath: "group/project",
			Profile: "go", Path: "/go/pkg/mod", Trust: "unprotected", SizeBytes: 4096, SizeKnown: false, LastUsed: t0.Add(-3 * 24 * time.Hour)},
		{Volume: "warmcache-cache-dir-fedcba987654", Instance: "gitlab.example.com:8443", ProjectID: "1001", ProjectPath: "group/project",
			Profile: "cache-dir", Path: "/cache", Trust: "unprotected", SizeBytes: 0, SizeKnown: true},
	}
}

func TestWriteTable(t *testing.T) {
	tests := []struct {
		name    string
		entries []cache.Entry
		want    string
	}{
		{
			name:    "none",
			entries: nil,
			want:    "VOLUME  PROJECT  PROFILE  PATH  TRUST  SIZE  LAST USED\n",
		},
		{
			name:    "three",
			entries: entries(),
			want: "" +
				"VOLUME                            PROJECT        PROFILE    PATH         TRUST        SIZE     LAST USED\n" +
				"warmcache-npm-0123456789ab        group/other    npm        /root/.npm   protected    1.5 KiB  5m ago\n" +
				"warmcache-go-abcdef012345         group/project  go         /go/pkg/mod  unprotected  ?        3d ago\n" +
				"warmcache-cache-dir-fedcba987654  group/project  cache-dir  /cache       unprotected  0 B      never\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := writeTable(&b, tt.entries, t0); err != nil {
				t.Fatalf("WriteTable: %v", err)
			}
			if b.String() != tt.want {
				t.Errorf("WriteTable =\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	tests := []struct {
		name    string
		entries []cache.Entry
		want    string
	}{
		{name: "nil", entries: nil, want: "[]\n"},
		{name: "empty", entries: []cache.Entry{}, want: "[]\n"},
		{
			name:    "documented fields; last_used only when known",
			entries: []cache.Entry{entries()[0], entries()[2]},
			want: `[
  {
    "volume": "warmcache-npm-0123456789ab",
    "instance": "gitlab.example.com",
    "project_id": "2002",
    "project_path": "group/other",
    "profile": "npm",
    "path": "/root/.npm",
    "trust": "protected",
    "size_bytes": 1536,
    "size_known": true,
    "last_used": "2026-11-26T21:26:10Z"
  },
  {
    "volume": "warmcache-cache-dir-fedcba987654",
    "instance": "gitlab.example.com:8443",
    "project_id": "1001",
    "project_path": "group/project",
    "profile": "cache-dir",
    "path": "/cache",
    "trust": "unprotected",
    "size_bytes": 0,
    "size_known": true
  }
]
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := writeJSON(&b, tt.entries); err != nil {
				t.Fatalf("WriteJSON: %v", err)
			}
			if b.String() != tt.want {
				t.Errorf("WriteJSON =\n%s\nwant\n%s", b.String(), tt.want)
			}
			// Scripts read it back to the same entries.
			var back []cache.Entry
			if err := json.Unmarshal([]byte(b.String()), &back); err != nil {
				t.Fatal(err)
			}
			if len(back) != len(tt.entries) || (len(back) > 0 && !reflect.DeepEqual(back, tt.entries)) {
				t.Errorf("decoded %+v, want %+v", back, tt.entries)
			}
		})
	}
}

// errWriter fails every write, like a closed pipe.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestWriteErrors(t *testing.T) {
	if err := writeTable(errWriter{}, entries(), t0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("WriteTable to a closed writer = %v, want %v", err, os.ErrClosed)
	}
	if err := writeJSON(errWriter{}, entries()); !errors.Is(err, os.ErrClosed) {
		t.Errorf("WriteJSON to a closed writer = %v, want %v", err, os.ErrClosed)
	}
}

var t0 = time.Date(2026, 11, 26, 21, 31, 10, 0, time.UTC)

func TestWriteTableQuotaColumn(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	entries := []cache.Entry{
		{Volume: "a", ProjectPath: "g/p", Profile: "go", Path: "/go/pkg/mod", Trust: "protected", SizeBytes: 5 << 20, SizeKnown: true,
			LastUsed: now.Add(-time.Hour), QuotaBytes: 100 << 20, QuotaUsedBytes: 6 << 20},
		{Volume: "b", ProjectPath: "g/p", Profile: "npm", Path: "/root/.npm", Trust: "protected", LastUsed: now.Add(-2 * time.Hour)},
	}
	var b strings.Builder
	if err := writeTable(&b, entries, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if !strings.HasSuffix(lines[0], "QUOTA") || !strings.HasSuffix(lines[1], "6.0 MiB of 100 MiB") || !strings.HasSuffix(lines[2], "-") {
		t.Errorf("table:\n%s", b.String())
	}
	b.Reset()
	entries[0].QuotaBytes = 0
	if err := writeTable(&b, entries, now); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "QUOTA") {
		t.Errorf("a QUOTA column with no quota:\n%s", b.String())
	}
}
