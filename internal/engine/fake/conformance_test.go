package fake_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/enginetest"
	"github.com/warmcache/warmcache/internal/engine/fake"
)

// image is the suite's image: present, with the busybox commands
// (emulated by run).
const image = "enginetest/busybox:1"

// The fake is held to the contract Docker is held to (test/e2e).
func TestConformance(t *testing.T) {
	info := engine.ImageInfo{User: "1000", ExposedPorts: []engine.Port{{Number: 8080, Protocol: "tcp"}}}
	enginetest.Run(t, func(t *testing.T) engine.Engine { return newFake(t, info) }, enginetest.Options{
		Prefix:        "fake-enginetest",
		Image:         image,
		ImageInfo:     info,
		PullableImage: "enginetest/pullable:1",
		// No UnpullableImage: the fake pulls every reference, so that unit
		// tests need no registry (a test makes a pull fail with FailNext).
	})
}

// newFake is a fake whose containers behave as the suite's scripts would
// in busybox: sh stands in for the processes the fake does not run.
func newFake(t *testing.T, info engine.ImageInfo) *fake.Engine {
	f := fake.New()
	f.AddImage(image)
	f.SetImageInfo(image, info)
	f.SetVolumeRoot(t.TempDir())
	f.SetExecStream(func(_ string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) engine.Exit {
		code, _ := run(cmd, bufio.NewReader(stdin), false, stdout, stderr)
		return engine.Exit{Code: code}
	})
	// A container's main process runs when it starts; one that ends by
	// itself is seen exited from then on.
	var mu sync.Mutex
	ended := map[string]bool{}
	f.SetHook(func(method, name string) error {
		mu.Lock()
		defer mu.Unlock()
		switch method {
		case fake.MethodStartContainer:
			if c, ok := f.Container(name); ok && c.State == fake.Created {
				var out bytes.Buffer
				_, blocked := run(append(c.Spec.Entrypoint, c.Spec.Cmd...), nil, c.Spec.KeepStdinOpen, &out, &out)
				f.SetLogs(name, out.String())
				ended[name] = !blocked
			}
		case fake.MethodRemove:
			delete(ended, name)
		default:
			if ended[name] && f.Stop(name) {
				delete(ended, name)
			}
		}
		return nil
	})
	return f
}

// run runs argv as busybox would, for the commands the suite's scripts
// use (see package enginetest). in is stdin, nil for none: then a read
// sees its end, or blocks forever if open is set, which ends the run with
// blocked set.
func run(argv []string, in *bufio.Reader, open bool, stdout, stderr io.Writer) (code int, blocked bool) {
	if len(argv) == 0 {
		return 0, false
	}
	if argv[0] == "exec" {
		argv = argv[1:]
	}
	args := argv[1:]
	w := stdout
	if n := len(args); n > 0 && args[n-1] == ">&2" {
		w, args = stderr, args[:n-1]
	}
	switch argv[0] {
	case "sh":
		if len(args) != 2 || args[0] != "-c" {
			fmt.Fprintf(stderr, "sh: only sh -c SCRIPT, got %q\n", args)
			return 2, false
		}
		for cmd := range strings.SplitSeq(args[1], ";") {
			words := strings.Fields(cmd)
			if len(words) == 2 && words[0] == "exit" {
				code, _ := strconv.Atoi(words[1])
				return code, false
			}
			if code, blocked = run(words, in, open, stdout, stderr); blocked || len(words) > 0 && words[0] == "exec" {
				return code, blocked
			}
		}
		return code, false
	case "echo":
		fmt.Fprintln(w, strings.Join(args, " "))
	case "seq":
		first, _ := strconv.Atoi(args[0])
		last, _ := strconv.Atoi(args[1])
		for i := first; i <= last; i++ {
			fmt.Fprintln(w, i)
		}
	case "cat":
		if in == nil {
			return 0, open
		}
		if _, err := io.Copy(w, in); err != nil {
			return 1, false
		}
	case "read":
		if in == nil {
			return 1, open
		}
		if _, err := in.ReadString('\n'); err != nil {
			return 1, false
		}
	default:
		fmt.Fprintf(stderr, "sh: %s: not found\n", argv[0])
		return 127, false
	}
	return 0, false
}
