package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/config"
)

// TestNewLogger: where the structured lines go, for the job stages and
// the admin commands, with log.file unset (the default), set, and "".
func TestNewLogger(t *testing.T) {
	dir := t.TempDir()
	writable := filepath.Join(dir, "warmcache.log")
	missing := filepath.Join(dir, "no-such-dir", "warmcache.log") // the package is not installed
	for _, tc := range []struct {
		name     string
		log      config.Log
		jobStage bool
		toFile   bool   // the line is in log.File
		stderr   bool   // the line is on stderr
		err      string // newLogger's error
	}{
		{"default file opens: job stage", config.Log{File: writable}, true, true, false, ""},
		{"default file opens: admin command", config.Log{File: writable}, false, true, false, ""},
		{"default file cannot open: job stage logs nowhere", config.Log{File: missing}, true, false, false, ""},
		{"default file cannot open: admin command logs to stderr", config.Log{File: missing}, false, false, true, ""},
		{"no file: job stage logs nowhere", config.Log{File: "", FileInFile: true}, true, false, false, ""},
		{"no file: admin command logs to stderr", config.Log{File: "", FileInFile: true}, false, false, true, ""},
		{"named file cannot open: an error", config.Log{File: missing, FileInFile: true}, false, false, false,
			"log.file: open " + missing + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(writable)
			tc.log.Level = "info"
			var stderr bytes.Buffer
			logger, closeLog, err := newLogger(tc.log, &stderr, tc.jobStage)
			if tc.err != "" || err != nil {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			logger.Info("hello")
			closeLog()
			data, _ := os.ReadFile(tc.log.File)
			if got := strings.Contains(string(data), `"msg":"hello"`); got != tc.toFile {
				t.Errorf("line in the file: %v, want %v (%q)", got, tc.toFile, data)
			}
			if got := strings.Contains(stderr.String(), `"msg":"hello"`); got != tc.stderr {
				t.Errorf("line on stderr: %v, want %v (%q)", got, tc.stderr, stderr.String())
			}
		})
	}
}
