package driver

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestConfigGolden(t *testing.T) {
	var stdout, stderr bytes.Buffer
	d := Deps{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	if err := Config(d, "1.2.3"); err != nil {
		t.Fatalf("Config: %v", err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", stderr.String())
	}

	// stdout is exactly one JSON object: the runner parses it whole.
	dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("stdout is not a JSON object: %v: %q", err, stdout.String())
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		t.Fatalf("more than one JSON value on stdout: %q", stdout.String())
	}

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if out["hostname"] != host {
		t.Errorf("hostname = %v, want %q", out["hostname"], host)
	}
	quoted, _ := json.Marshal(host)
	got := strings.Replace(stdout.String(), `"hostname":`+string(quoted), `"hostname":"HOSTNAME"`, 1)

	const golden = "testdata/config.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("config JSON =\n%s\nwant (%s)\n%s", got, golden, want)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestConfigWriteError(t *testing.T) {
	err := Config(Deps{Stdout: failingWriter{}}, "1.2.3")
	if err == nil || err.Error() != "writing config JSON: broken pipe" {
		t.Errorf("Config = %v", err)
	}
}
