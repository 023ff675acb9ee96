package credentials

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
)

// npmAuth is an npm registry's token.
type npmAuth struct {
	registry string // e.g. https://npm.example.com/api/v4/packages/npm/
	token    string
}

// credentialFiles renders the netrc (curl, Go, pip...), the git
// credential store and the npmrc auth lines. Empty contents mean nothing
// to deliver.
func credentialFiles(creds []credential, npm []npmAuth) []File {
	var netrc, git, npmrc bytes.Buffer
	seen := map[string]bool{}
	line := func(machine string, c credential) {
		// The first entry for a machine wins in every reader; later
		// duplicates are left out so the file says what happens.
		if !seen[machine] {
			seen[machine] = true
			fmt.Fprintf(&netrc, "machine %s login %s password %s\n", machine, c.login, c.token)
		}
	}
	for _, c := range creds {
		// Go (1.24 and later) matches a machine against host:port, curl
		// and git against the host name alone: a port gets both entries.
		if port(c.host) != "" {
			line(c.host, c)
		}
		line(hostname(c.host), c)
		schemes := []string{"https", "http"}
		if c.scheme != "" {
			schemes = []string{c.scheme}
		}
		for _, s := range schemes {
			u := url.URL{Scheme: s, User: url.UserPassword(c.login, c.token), Host: c.host}
			fmt.Fprintln(&git, u.String())
		}
	}
	for _, n := range npm {
		u, err := url.Parse(n.registry)
		if err != nil {
			continue // validated with the config
		}
		fmt.Fprintf(&npmrc, "//%s%s:_authToken=%s\n", u.Host, withSlash(u.Path), n.token)
	}
	return []File{
		{Name: NetrcFile, Content: netrc.Bytes()},
		{Name: GitFile, Content: git.Bytes()},
		{Name: NPMFile, Content: npmrc.Bytes()},
	}
}

func withSlash(p string) string {
	if !strings.HasSuffix(p, "/") {
		return p + "/"
	}
	return p
}

// NetrcTokens lists the passwords of a netrc this package wrote: what a
// job was given, which a later stage masks even once the token file on
// the runner host holds a rotated one.
func NetrcTokens(netrc []byte) []string {
	var out []string
	for line := range strings.Lines(string(netrc)) {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "password" {
				out = append(out, f[i+1])
			}
		}
	}
	return out
}
