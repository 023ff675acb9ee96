// Command demo takes a sample Go CI job through warmcache's four stages
// twice on the real Docker engine, cold then warm, playing gitlab-runner's
// part with a real runner's scripts, and prints what happened and how long
// each stage took. `make demo` builds the driver and the images first.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/warmcache/warmcache/internal/engine/docker"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/test/runnersim"
)

const (
	demoProject = 4242
	demoImage   = "warmcache-test/debian:1"
)

func main() {
	driver := flag.String("driver", "bin/warmcache", "the warmcache binary")
	project := flag.String("project", "test/sampleapp", "the sample Go project")
	flag.Parse()
	if err := demo(*driver, *project); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// stage is one runner call and its wall time.
type stage struct {
	name string
	took time.Duration
}

func demo(driver, project string) error {
	eng, err := docker.New("unix:///var/run/docker.sock", docker.Options{})
	if err != nil {
		return err
	}
	if err := removeDemoCaches(eng); err != nil {
		return err
	}
	files, err := runnersim.ReadProject(project)
	if err != nil {
		return err
	}
	proxy, err := runnersim.StartModProxy(project)
	if err != nil {
		return err
	}
	defer proxy.Close()
	git, err := runnersim.StartGitServer(runnersim.SampleToken, files)
	if err != nil {
		return err
	}
	defer git.Close()

	fmt.Printf("Sample job: %s (%d Go modules in go.sum) built in %s, sources from a git server and modules from a module proxy, both on loopback.\n\n",
		project, strings.Count(files["go.sum"], "/go.mod "), demoImage)
	cold, err := runJob(driver, git, proxy.URL, 1, "cold")
	if err != nil {
		return err
	}
	warm, err := runJob(driver, git, proxy.URL, 2, "warm")
	if err != nil {
		return err
	}

	fmt.Println("== warmcache cache ls")
	// The admin command itself: sizes and last use from the driver's own
	// records, as a runner admin sees them.
	ls := exec.Command(driver, "cache", "ls")
	ls.Stdout, ls.Stderr = os.Stdout, os.Stderr
	if err := ls.Run(); err != nil {
		return fmt.Errorf("warmcache cache ls: %w", err)
	}

	fmt.Println("\n== Wall time per runner call (what the pipeline waits for)")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "call\tcold\twarm\tcold/warm\t")
	var ct, wt time.Duration
	for i := range cold {
		c, w := cold[i].took, warm[i].took
		ct, wt = ct+c, wt+w
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1fx\t\n", cold[i].name, round(c), round(w), float64(c)/float64(w))
	}
	fmt.Fprintf(tw, "whole job\t%s\t%s\t%.1fx\t\n", round(ct), round(wt), float64(ct)/float64(wt))
	tw.Flush()

	fmt.Println("\nThe demo's cache volumes are removed now; a real runner keeps them.")
	return removeDemoCaches(eng)
}

// runJob drives one job of the sample project through every stage.
func runJob(driver string, git *runnersim.GitServer, proxyURL string, n int, label string) ([]stage, error) {
	dir, err := os.MkdirTemp("", "warmcache-demo")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	vars := map[string]string{"GOPROXY": proxyURL, "GOSUMDB": "off", "GOFLAGS": "-mod=mod"}
	if label == "warm" {
		// Proof that nothing is downloaded: the warm job has no proxy at all.
		vars["GOPROXY"] = "off"
	}
	j, err := runnersim.NewJob(driver, dir, runnersim.Spec{
		JobID: int64(os.Getpid())*10 + int64(n), ProjectID: demoProject, Image: demoImage, Vars: vars,
		Config: "[docker]\nhelper_image = \"" + demoImage + "\"\nnetwork_mode = \"host\"\n",
	})
	if err != nil {
		return nil, err
	}
	fmt.Printf("== Job %d (%s cache), GOPROXY=%s\n", n, label, vars["GOPROXY"])
	var stages []stage
	call := func(name string, show func(runnersim.Result), args ...string) error {
		start := time.Now()
		r, err := j.Call(args...)
		if err != nil {
			return err
		}
		stages = append(stages, stage{name, time.Since(start)})
		if show != nil {
			show(r)
		}
		if r.Code != 0 {
			return fmt.Errorf("%s failed:\n%s", name, r)
		}
		return nil
	}
	indent := func(s string) { fmt.Print(prefixLines(s, "   | ")) }
	if err := call("config", nil, "config"); err != nil {
		return nil, err
	}
	if err := call("prepare", func(r runnersim.Result) { indent(r.Stderr) }, "prepare"); err != nil {
		return nil, err
	}
	build := "echo \"$ go build ./... && go test ./...\"\n" +
		"go build -o /tmp/sampleapp . && go test -count=1 ./... && /tmp/sampleapp\n"
	for _, st := range []struct {
		name, script string
		show         bool
	}{
		{"prepare_script", sample("prepare_script", git), false},
		{"get_sources", sample("get_sources", git), false},
		{"restore_cache", sample("restore_cache", git), false},
		{"build_script", j.Script(build), true},
		{"after_script", sample("after_script", git), false},
		{"archive_cache", sample("archive_cache", git), false},
		{"cleanup_file_variables", sample("cleanup_file_variables", git), false},
	} {
		path, err := j.WriteScript(st.script)
		if err != nil {
			return nil, err
		}
		show := func(r runnersim.Result) {
			if st.show {
				indent(r.Stdout + r.Stderr)
			}
		}
		if err := call("run "+st.name, show, "run", path, st.name); err != nil {
			return nil, err
		}
	}
	if err := call("cleanup", nil, "cleanup"); err != nil {
		return nil, err
	}
	fmt.Println()
	return stages, nil
}

// sample is a real runner's script for stage, pointed at the demo's git
// server.
func sample(stage string, git *runnersim.GitServer) string {
	s, err := git.SampleScript(stage)
	if err != nil {
		panic(err) // embedded at build time: cannot be missing
	}
	return s
}

func removeDemoCaches(eng *docker.Docker) error {
	ctx := context.Background()
	rs, err := eng.List(ctx, map[string]string{naming.LabelCacheProjectID: fmt.Sprint(demoProject)})
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := eng.Remove(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func prefixLines(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix) + "\n"
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
