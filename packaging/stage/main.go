// Command stage writes what warmcache's Debian package carries besides the
// binary and the static files under packaging/ (make deb):
//
//   - config.toml: the README's "every key with its default" block with
//     every key commented out, so the conffile reads as the defaults and
//     documents each key, and cannot drift from the README;
//   - warmcache.8.gz: the man page the binary's own CLI renders (urfave/cli's
//     ToMan, section 8);
//   - warmcache.bash and _warmcache: urfave/cli's completion scripts;
//   - debversion: the Debian version for the git describe version.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "stage: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	version := flag.String("version", "", "warmcache's `VERSION` (git describe)")
	binary := flag.String("bin", "bin/warmcache", "the warmcache `BINARY` to package")
	readme := flag.String("readme", "README.md", "the `README` with the config block")
	urfave := flag.String("urfave", "", "urfave/cli's module `DIR` (its autocomplete scripts)")
	out := flag.String("out", "bin/pkg", "`DIR` to write to")
	flag.Parse()
	if *version == "" || *urfave == "" {
		return errors.New("-version and -urfave are required")
	}
	deb, err := debVersion(*version)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(*readme)
	if err != nil {
		return err
	}
	conf, err := configFile(text)
	if err != nil {
		return fmt.Errorf("%s: %w", *readme, err)
	}
	man, err := exec.Command(*binary, "manpage").Output()
	if err != nil {
		return fmt.Errorf("%s manpage: %w", *binary, err)
	}
	bash, err := os.ReadFile(filepath.Join(*urfave, "autocomplete", "bash_autocomplete"))
	if err != nil {
		return err
	}
	zsh, err := os.ReadFile(filepath.Join(*urfave, "autocomplete", "zsh_autocomplete"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{
		"config.toml":    conf,
		"warmcache.8.gz": gzipped(man),
		"warmcache.bash": bashCompletion(bash),
		"_warmcache":     zshCompletion(zsh),
		"debversion":     []byte(deb + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(*out, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

var (
	tagVersion = regexp.MustCompile(`^v?([0-9]+(\.[0-9]+)+)(-(.*))?$`)
	debChars   = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
)

// debVersion turns git describe's output into a Debian version that sorts
// as the commits do: v1.2.0 -> 1.2.0, v1.2.0-3-gabc1234-dirty ->
// 1.2.0+3.gabc1234.dirty (after 1.2.0); without a tag, abc1234 ->
// 0+abc1234 (before any release).
func debVersion(describe string) (string, error) {
	var v string
	if m := tagVersion.FindStringSubmatch(describe); m != nil {
		v = m[1]
		if m[4] != "" {
			v += "+" + strings.ReplaceAll(m[4], "-", ".")
		}
	} else {
		v = "0+" + strings.ReplaceAll(describe, "-", ".")
	}
	if !debChars.MatchString(v) {
		return "", fmt.Errorf("version %q gives %q, not a Debian version", describe, v)
	}
	return v, nil
}

const configHeading = "### Configuration, every key with its default"

var (
	keyLine = regexp.MustCompile(`^[a-z_]+ *=`)
	// trailing is the gap before a key line's comment: two spaces shorter
	// once the line starts with "# ", so the comments stay aligned.
	trailing = regexp.MustCompile(`^([^#]*\S)   ( *#)`)
)

// configBlock is the TOML block under the README's config heading.
func configBlock(readme []byte) (string, error) {
	_, after, ok := bytes.Cut(readme, []byte("\n"+configHeading+"\n"))
	if !ok {
		return "", fmt.Errorf("no %q section", configHeading)
	}
	_, after, ok = bytes.Cut(after, []byte("```toml\n"))
	if !ok {
		return "", errors.New("no ```toml block under " + configHeading)
	}
	block, _, ok := bytes.Cut(after, []byte("\n```"))
	if !ok {
		return "", errors.New("the ```toml block under " + configHeading + " does not end")
	}
	return string(block) + "\n", nil
}

// configFile is the package's /etc/warmcache/config.toml: the README's
// block with every key line commented out, under a header saying how to
// use it. Section lines stay, so uncommenting a key is all an edit takes.
func configFile(readme []byte) ([]byte, error) {
	block, err := configBlock(readme)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`# /etc/warmcache/config.toml: warmcache's configuration.
#
# Every key is shown with its built-in default, commented out: this file as
# installed changes nothing. To change a key, uncomment its line (under its
# [section] line) and edit the value. Unknown keys and invalid values are
# rejected, every problem on one line naming the key; check an edit with
#   warmcache doctor
# The package never replaces this file once you have edited it.

`)
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line := sc.Text()
		if keyLine.MatchString(line) {
			line = "# " + trailing.ReplaceAllString(line, "$1 $2")
		}
		b.WriteString(line + "\n")
	}
	return b.Bytes(), sc.Err()
}

// bashCompletion is urfave/cli's bash script, which takes the program's
// name from its own file name: bash-completion loads it as
// completions/warmcache.
func bashCompletion(script []byte) []byte {
	return append([]byte("# bash completion for warmcache (urfave/cli's autocomplete/bash_autocomplete)\nPROG=warmcache\n"), script...)
}

// zshCompletion is urfave/cli's zsh script made an autoloaded completion
// function: named for warmcache, and completing on its first call too.
func zshCompletion(script []byte) []byte {
	s := strings.ReplaceAll(string(script), "$PROG", "warmcache")
	return []byte(strings.TrimRight(s, "\n") + "\n_cli_zsh_autocomplete \"$@\"\n")
}

func gzipped(data []byte) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(data)
	w.Close()
	return b.Bytes()
}
