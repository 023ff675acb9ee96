package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/errdefs"
	"github.com/warmcache/warmcache/internal/engine"
)

// The pull stream becomes one line per layer event; progress ticks are
// dropped, and an error inside the stream is returned.
func TestReadPullStream(t *testing.T) {
	stream := strings.Join([]string{
		`{"status":"Pulling from library/busybox","id":"1.36"}`,
		`{"status":"Pulling fs layer","progressDetail":{},"id":"a1b2"}`,
		`{"status":"Waiting","progressDetail":{},"id":"c3d4"}`,
		`{"status":"Downloading","progressDetail":{"current":100,"total":200},"progress":"[=>  ]","id":"a1b2"}`,
		`{"status":"Downloading","progressDetail":{"current":200,"total":200},"progress":"[===]","id":"a1b2"}`,
		`{"status":"Verifying Checksum","progressDetail":{},"id":"a1b2"}`,
		`{"status":"Download complete","progressDetail":{},"id":"a1b2"}`,
		`{"status":"Extracting","progressDetail":{"current":1,"total":2},"id":"a1b2"}`,
		`{"status":"Pull complete","progressDetail":{},"id":"a1b2"}`,
		`{"status":"Digest: sha256:0123"}`,
		`{"status":"Status: Downloaded newer image for busybox:1.36"}`,
	}, "\n")
	var lines []string
	if err := readPullStream(strings.NewReader(stream), func(s string) { lines = append(lines, s) }); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1.36: Pulling from library/busybox",
		"a1b2: Pulling fs layer",
		"a1b2: Download complete",
		"a1b2: Pull complete",
		"Digest: sha256:0123",
		"Status: Downloaded newer image for busybox:1.36",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestReadPullStreamErrors(t *testing.T) {
	for name, tc := range map[string]struct{ stream, want string }{
		"error field":   {`{"status":"Pulling fs layer","id":"a"}` + "\n" + `{"error":"unauthorized: authentication required"}`, "pull failed: unauthorized: authentication required"},
		"error detail":  {`{"errorDetail":{"message":"manifest unknown"}}`, "pull failed: manifest unknown"},
		"garbage":       {`not json`, "reading pull progress: invalid character 'o' in literal null (expecting 'u')"},
		"ended cleanly": {``, ""},
	} {
		t.Run(name, func(t *testing.T) {
			err := readPullStream(strings.NewReader(tc.stream), nil)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("error %q, want %q", got, tc.want)
			}
		})
	}
}

// Idempotent engine calls are retried, boundedly, only for errors that may
// pass by themselves.
func TestRetry(t *testing.T) {
	system := errdefs.System(errors.New("daemon hiccup"))
	for name, tc := range map[string]struct {
		errs      []error // what each call returns; nil ends the list
		wantCalls int
		wantErr   error
	}{
		"success first":              {errs: []error{nil}, wantCalls: 1},
		"a 500, then success":        {errs: []error{system, nil}, wantCalls: 2},
		"a reset, then success":      {errs: []error{syscall.ECONNRESET, nil}, wantCalls: 2},
		"transient every time":       {errs: []error{system, system, system, system}, wantCalls: 3, wantErr: system},
		"not found is final":         {errs: []error{errdefs.NotFound(errors.New("no such volume"))}, wantCalls: 1, wantErr: errdefs.NotFound(errors.New("no such volume"))},
		"a conflict is final":        {errs: []error{errdefs.Conflict(errors.New("in use"))}, wantCalls: 1, wantErr: errdefs.Conflict(errors.New("in use"))},
		"unknown errors are final":   {errs: []error{errors.New("bad request")}, wantCalls: 1, wantErr: errors.New("bad request")},
		"unexpected EOF, then works": {errs: []error{io.ErrUnexpectedEOF, nil}, wantCalls: 2},
	} {
		t.Run(name, func(t *testing.T) {
			calls := 0
			err := retry(context.Background(), func() error {
				e := tc.errs[min(calls, len(tc.errs)-1)]
				calls++
				return e
			})
			if calls != tc.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if fmt.Sprint(err) != fmt.Sprint(tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestRetryStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := retry(ctx, func() error { calls++; return errdefs.Unavailable(errors.New("busy")) })
	if calls != 1 || err == nil {
		t.Errorf("calls = %d, err = %v; want one call and its error", calls, err)
	}
}

func TestExposedPorts(t *testing.T) {
	got := exposedPorts(map[string]struct{}{"8080/tcp": {}, "53/udp": {}, "53/tcp": {}, "9000": {}, "x/tcp": {}, "0/tcp": {}, "70000/tcp": {}})
	want := []engine.Port{{Number: 53, Protocol: "tcp"}, {Number: 53, Protocol: "udp"}, {Number: 8080, Protocol: "tcp"}, {Number: 9000, Protocol: "tcp"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("exposedPorts = %v, want %v", got, want)
	}
	if got := exposedPorts(nil); got != nil {
		t.Errorf("exposedPorts(nil) = %v", got)
	}
}

// A service's logs are bounded: only the last maxLogBytes are kept.
func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&b, "line %04d\n", i)
	}
	if len(b.b) != maxLogBytes || !strings.HasSuffix(string(b.b), "line 2999\n") {
		t.Errorf("kept %d bytes ending %q", len(b.b), b.b[len(b.b)-10:])
	}
}

func TestResources(t *testing.T) {
	got := resources(engine.ContainerSpec{NanoCPUs: 5e8, CpusetCpus: "0", Memory: 1 << 30, MemorySwap: -1,
		MemoryReservation: 1 << 29, PidsLimit: 64, CgroupParent: "/warmcache/j"})
	if got.NanoCPUs != 5e8 || got.CpusetCpus != "0" || got.Memory != 1<<30 || got.MemorySwap != -1 ||
		got.MemoryReservation != 1<<29 || got.PidsLimit == nil || *got.PidsLimit != 64 || got.CgroupParent != "/warmcache/j" {
		t.Errorf("resources = %+v", got)
	}
	// No pids limit stays nil: 0 would mean "unset" only to newer engines.
	if r := resources(engine.ContainerSpec{}); r.PidsLimit != nil || r.NanoCPUs != 0 || r.Memory != 0 {
		t.Errorf("resources(empty) = %+v", r)
	}
}
