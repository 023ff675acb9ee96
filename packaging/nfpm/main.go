// Command nfpm builds warmcache's Debian package with nfpm's library: the
// package's contents and scripts are declared in packaging/nfpm.yaml, the
// version is given on the command line (make deb computes it from git
// describe). It lives in its own module so that nfpm's dependencies never
// reach warmcache's binary.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "nfpm: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	configFile := flag.String("config", "packaging/nfpm.yaml", "nfpm `FILE`")
	version := flag.String("version", "", "the Debian package `VERSION`")
	arch := flag.String("arch", "", "the Go `GOARCH` of the binary")
	target := flag.String("target", "bin", "`DIR` to write the .deb to")
	flag.Parse()
	if *version == "" || *arch == "" {
		return fmt.Errorf("-version and -arch are required")
	}
	cfg, err := nfpm.ParseFile(*configFile)
	if err != nil {
		return fmt.Errorf("%s: %w", *configFile, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return err
	}
	// Parsing filled in nfpm's placeholder version (v0.0.0-rc0), split as
	// semver; the version given is already a Debian one, taken as it is.
	info.Version, info.Prerelease, info.VersionMetadata = *version, "", ""
	info.Arch = *arch
	info.VersionSchema = "none"
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return err
	}
	out := filepath.Join(*target, deb.Default.ConventionalFileName(info))
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(out)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}
