package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// engineSocket is the engine the suite runs against.
const engineSocket = "/var/run/docker.sock"

// apiTrace is a unix-socket proxy in front of the engine that records
// every Engine API call made through it: which process made it, what it
// was and how long the engine took to answer it (to the end of its
// response body or stream). A job whose config names the proxy as
// docker.host is traced call by call; the driver still sees a local
// engine.
type apiTrace struct {
	sock string
	ln   net.Listener
	mu   sync.Mutex
	all  []apiCall
	busy int // calls in flight
}

// apiCall is one traced Engine API call.
type apiCall struct {
	PID        int32
	What       string // method and path, names and ids replaced by {}
	Start, End time.Time
}

// startAPITrace starts a trace proxy until the benchmark ends.
func startAPITrace(tb testing.TB) *apiTrace {
	tb.Helper()
	t := &apiTrace{sock: filepath.Join(tb.TempDir(), "engine.sock")}
	ln, err := net.Listen("unix", t.sock)
	if err != nil {
		tb.Fatal(err)
	}
	t.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go t.serve(c.(*net.UnixConn))
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return t
}

// config is the suite's default config with the proxy as the engine.
func (t *apiTrace) config() string {
	return strings.Replace(defaultConfig, "[docker]\n", "[docker]\nhost = \"unix://"+t.sock+"\"\n", 1)
}

// take returns, and forgets, the calls recorded so far.
func (t *apiTrace) take() []apiCall {
	t.mu.Lock()
	defer t.mu.Unlock()
	calls := t.all
	t.all = nil
	return calls
}

// serve forwards one client connection's requests to the engine, one at
// a time as HTTP/1.1 does, timing each; an upgraded one (an exec or
// attach stream) is copied both ways, half-closes included, until both
// ends are done.
func (t *apiTrace) serve(c *net.UnixConn) {
	defer c.Close()
	pid := peerPID(c)
	u, err := net.Dial("unix", engineSocket)
	if err != nil {
		return
	}
	defer u.Close()
	cr, ur := bufio.NewReader(c), bufio.NewReader(u)
	for {
		req, err := http.ReadRequest(cr)
		if err != nil {
			return
		}
		call := apiCall{PID: pid, What: req.Method + " " + apiPath(req.URL.Path), Start: time.Now()}
		t.mu.Lock()
		t.busy++
		t.mu.Unlock()
		if err := req.Write(u); err != nil {
			t.record(call)
			return
		}
		resp, err := http.ReadResponse(ur, req)
		if err != nil {
			t.record(call)
			return
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			fmt.Fprintf(c, "HTTP/1.1 %s\r\n", resp.Status)
			resp.Header.Write(c)
			io.WriteString(c, "\r\n")
			up := make(chan struct{})
			go func() {
				io.Copy(u, cr)
				u.(*net.UnixConn).CloseWrite()
				close(up)
			}()
			io.Copy(c, ur)
			c.CloseWrite()
			t.record(call)
			<-up
			return
		}
		werr := resp.Write(c)
		t.record(call)
		if werr != nil || resp.Close || req.Close {
			return
		}
	}
}

func (t *apiTrace) record(c apiCall) {
	c.End = time.Now()
	t.mu.Lock()
	t.all = append(t.all, c)
	t.busy--
	t.mu.Unlock()
}

// idle says whether no call is in flight.
func (t *apiTrace) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.busy == 0
}

// peerPID is the process at the other end of a unix connection.
func peerPID(c *net.UnixConn) int32 {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var cred *syscall.Ucred
	raw.Control(func(fd uintptr) { cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED) })
	if cred == nil {
		return 0
	}
	return cred.Pid
}

// apiPath is an Engine API path without its version prefix and with the
// names and ids in it replaced by {}, so calls of every job compare.
func apiPath(p string) string {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(segs) > 0 && strings.HasPrefix(segs[0], "v1.") {
		segs = segs[1:]
	}
	if len(segs) >= 2 && segs[0] == "images" && segs[len(segs)-1] == "json" {
		return "/images/{}/json" // an image name may hold slashes
	}
	for i := 1; i < len(segs); i++ {
		switch segs[i-1] {
		case "containers", "exec", "networks", "volumes":
			if !slices.Contains([]string{"create", "json", "prune"}, segs[i]) {
				segs[i] = "{}"
			}
		}
	}
	return "/" + strings.Join(segs, "/")
}

// stageTrace is the calls one stage process made, and those that other
// processes (the detached helpers a stage starts) made while it ran.
type stageTrace struct {
	Stage string
	Start time.Time
	Own   []apiCall
	Other []apiCall
}

// split assigns calls to the stages, by process, in order: a call of a
// process that is no stage goes to the stage that was running when it
// started, or to the last one.
func split(calls []apiCall, stages []stageTrace, pids []int32, ends []time.Time) []stageTrace {
	for _, c := range calls {
		if i := slices.Index(pids, c.PID); i >= 0 {
			stages[i].Own = append(stages[i].Own, c)
			continue
		}
		i := len(stages) - 1
		for k := range stages {
			if c.Start.Before(ends[k]) {
				i = k
				break
			}
		}
		stages[i].Other = append(stages[i].Other, c)
	}
	return stages
}

// format prints a stage's calls: offset from the stage's start, duration,
// and what, with the calls of other processes marked.
func (s stageTrace) format(wall time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d ms, %d calls\n", s.Stage, wall.Milliseconds(), len(s.Own))
	all := append(slices.Clone(s.Own), s.Other...)
	slices.SortFunc(all, func(a, b apiCall) int { return a.Start.Compare(b.Start) })
	for _, c := range all {
		mark := ""
		if slices.Contains(s.Other, c) {
			mark = " (detached)"
		}
		fmt.Fprintf(&b, "  +%4d ms %4d ms  %s%s\n", c.Start.Sub(s.Start).Milliseconds(), c.End.Sub(c.Start).Milliseconds(), c.What, mark)
	}
	return b.String()
}
