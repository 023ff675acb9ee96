package services

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
)

// unanswered returns a loopback port whose connection attempts get no
// answer, as a container address the runner host cannot reach (rootless
// Docker, Docker Desktop): its listener's accept queue is full, so the
// kernel drops every further SYN.
func unanswered(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	filler, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	return port
}

// When the runner host cannot reach the job's network, or the engine is
// on another host, the services' ports are tried from inside the network,
// in the helper container, and a ready service costs no wait_timeout.
func TestServiceWaitFromHelper(t *testing.T) {
	port := unanswered(t)
	portName := engine.Port{Number: port, Protocol: "tcp"}.String()
	switchLine := fmt.Sprintf("The runner host cannot reach the job's network (127.0.0.1:%d: i/o timeout); trying the services from the helper container", port)
	for _, tt := range []struct {
		name       string
		host       string
		exit       int
		stderr     string
		wantLog    string
		wantSwitch bool
	}{
		{"host cannot reach the network", "", 0, "", "Services ready in ", true},
		{"remote engine", "tcp://docker.example.com:2376", 0, "", "Services ready in ", false},
		{"port closed", "", 1, "probe: connect: Connection refused\nprobe: line 1: /dev/tcp/127.0.0.1/" + strconv.Itoa(port) + ": Connection refused\n",
			"WARNING: service postgres:16 is not ready: port " + portName + " did not open within 2s (last try: connection refused (from the helper container)); the job goes on\n", true},
		{"helper without bash", "", 127, "exec: bash: not found\n",
			"WARNING: service postgres:16 is not ready: port " + portName + " cannot be tried: cannot probe services from the helper container: it has no bash (exit code 127); the job goes on\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness()
			if tt.host != "" {
				h.cfg.Docker.Host = tt.host
			}
			h.cfg.Services.WaitTimeout = 2 * time.Second
			svc := sampleKey.ServiceName(0)
			helper, svcs, specs := h.start(t, sample(t, nil, nil), map[string][]engine.Port{"postgres:16": {{Number: port, Protocol: "tcp"}}})
			h.f.SetIP(svc, "127.0.0.1")
			var probes [][]string
			h.f.SetExec(func(name string, cmd []string, _ []byte) (engine.Exit, string, string) {
				if name == helper && cmd[0] == "bash" {
					probes = append(probes, cmd)
					return engine.Exit{Code: tt.exit}, "", tt.stderr
				}
				return engine.Exit{}, "", ""
			})
			start := time.Now()
			Wait(context.Background(), h.deps(), helper, svcs, specs)
			if !strings.Contains(h.jobLog(), tt.wantLog) {
				t.Errorf("job log lacks %q:\n%s", tt.wantLog, h.jobLog())
			}
			if got := slices.Contains(h.jobLogLines(), switchLine); got != tt.wantSwitch {
				t.Errorf("job log says the host cannot reach the network: %v, want %v:\n%s", got, tt.wantSwitch, h.jobLog())
			}
			want := []string{"bash", "-c", `exec 3<>"/dev/tcp/$1/$2"`, "probe", "127.0.0.1", strconv.Itoa(port)}
			if len(probes) == 0 || !slices.Equal(probes[0], want) {
				t.Errorf("probes in the helper %q, want %q", probes, want)
			}
			if ready := tt.exit == 0; ready && time.Since(start) >= 2*time.Second {
				t.Errorf("the wait took %s: it ran into its timeout", time.Since(start))
			}
		})
	}
}
