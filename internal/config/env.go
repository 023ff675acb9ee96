package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"
)

// Env is what every job container gets for reaching the network: proxies,
// Go module settings, free-form variables and credentials for private
// hosts. A variable the job sets itself always wins over these.
type Env struct {
	// HTTPProxy and HTTPSProxy are exported in lower and upper case and
	// as npm's and git's own settings.
	HTTPProxy  string `toml:"http_proxy"`
	HTTPSProxy string `toml:"https_proxy"`
	// NoProxy is a comma-separated list; loopback, the job's service
	// aliases and the hosts of GoPrivate and GoNoProxy are added.
	NoProxy string `toml:"no_proxy"`
	// Go settings, passed as GOPROXY, GOPRIVATE and so on.
	GoProxy   string `toml:"goproxy"`
	GoPrivate string `toml:"goprivate"`
	GoNoProxy string `toml:"gonoproxy"`
	GoNoSumDB string `toml:"gonosumdb"`
	GoSumDB   string `toml:"gosumdb"`
	GoFlags   string `toml:"goflags"`
	// JobToken gives the job its own job token as a credential for its
	// own GitLab host (netrc, git), and adds that host to GOPRIVATE.
	JobToken bool `toml:"job_token"`
	// Extra variables, set as they are.
	Extra map[string]string `toml:"extra"`
	// Tokens are service-account credentials for private hosts.
	Tokens []Token `toml:"token"`
}

// Token is a service-account credential for one host. The token lives in
// a file read at each prepare, so rotating it needs no restart and no
// secret sits in the TOML.
type Token struct {
	// Host is "host" or "host:port".
	Host      string `toml:"host"`
	Login     string `toml:"login"`
	TokenFile string `toml:"token_file"`
	// NPMRegistry, when set, also gets an npm auth line for the token.
	NPMRegistry string `toml:"npm_registry"`
}

// ownedNames are variables the [env] section sets through its own keys;
// env.extra may not set them (any case for the proxy ones).
var ownedNames = []string{
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "GOPROXY", "GOPRIVATE", "GONOPROXY",
	"GONOSUMDB", "GOSUMDB", "GOFLAGS", "NETRC", "GIT_CONFIG_COUNT",
}

func (e Env) validate() []string {
	var p []string
	for _, kv := range [][2]string{{"env.http_proxy", e.HTTPProxy}, {"env.https_proxy", e.HTTPSProxy}} {
		if kv[1] != "" {
			p = append(p, checkURL(kv[0], kv[1], "http", "https", "socks5", "socks5h")...)
		}
	}
	for i, entry := range splitList(e.NoProxy) {
		if strings.ContainsAny(entry, " \t=/@") && !isCIDR(entry) {
			p = append(p, fmt.Sprintf("env.no_proxy: entry %d %q must be a host, .domain, IP or CIDR", i, entry))
		}
	}
	if e.GoProxy != "" {
		for _, entry := range strings.FieldsFunc(e.GoProxy, func(r rune) bool { return r == ',' || r == '|' }) {
			if entry != "direct" && entry != "off" {
				p = append(p, checkURL("env.goproxy", entry, "http", "https", "file")...)
			}
		}
	}
	for _, kv := range [][2]string{{"env.goprivate", e.GoPrivate}, {"env.gonoproxy", e.GoNoProxy}, {"env.gonosumdb", e.GoNoSumDB}} {
		key := kv[0]
		for _, pat := range splitList(kv[1]) {
			if _, err := path.Match(pat, ""); err != nil || strings.ContainsAny(pat, " \t") {
				p = append(p, fmt.Sprintf("%s: %q is not a module path pattern (e.g. gitlab.example.com,*.corp.example)", key, pat))
			}
		}
	}
	if strings.ContainsFunc(e.GoSumDB, isControl) {
		p = append(p, "env.gosumdb: must be one line")
	} else if f := strings.Fields(e.GoSumDB); len(f) == 2 { // "name+key URL"
		p = append(p, checkURL("env.gosumdb", f[1], "http", "https")...)
	}
	for _, f := range strings.Fields(e.GoFlags) {
		if !strings.HasPrefix(f, "-") {
			p = append(p, fmt.Sprintf("env.goflags: %q must start with - (e.g. \"-mod=mod -trimpath\")", f))
		}
	}
	for _, k := range sortedKeys(e.Extra) {
		switch {
		case !validEnvName(k):
			p = append(p, fmt.Sprintf("env.extra: %q is not a valid variable name", k))
		case slices.Contains(ownedNames, strings.ToUpper(k)) || strings.HasPrefix(strings.ToLower(k), "npm_config_") ||
			strings.HasPrefix(strings.ToUpper(k), "GIT_CONFIG_"):
			p = append(p, fmt.Sprintf("env.extra: %s is set by warmcache from the other env keys; set it there", k))
		case strings.ContainsFunc(e.Extra[k], func(r rune) bool { return r == 0 }):
			p = append(p, fmt.Sprintf("env.extra: %s holds a NUL character", k))
		}
	}
	hosts := map[string]bool{}
	for i, t := range e.Tokens {
		key := fmt.Sprintf("env.token[%d]", i)
		if u, err := url.Parse("//" + t.Host); t.Host == "" || err != nil || u.Host != t.Host || u.Port() == "" && strings.HasSuffix(t.Host, ":") {
			p = append(p, fmt.Sprintf("%s.host: %q must be a host or host:port such as git.example.com", key, t.Host))
		} else if hosts[strings.ToLower(t.Host)] {
			p = append(p, fmt.Sprintf("%s.host: %q is listed twice", key, t.Host))
		}
		hosts[strings.ToLower(t.Host)] = true
		if t.Login == "" || strings.ContainsFunc(t.Login, isSpaceOrControl) {
			p = append(p, key+".login: must be one word")
		}
		if !strings.HasPrefix(t.TokenFile, "/") {
			p = append(p, key+".token_file: must be the absolute path of a file holding the token")
		}
		if t.NPMRegistry != "" {
			p = append(p, checkURL(key+".npm_registry", t.NPMRegistry, "http", "https")...)
		}
	}
	return p
}

// checkURL validates a URL setting; a password in it would be visible in
// `docker inspect`, so credentials belong in [[env.token]] instead.
func checkURL(key, v string, schemes ...string) []string {
	u, err := url.Parse(v)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" && u.Scheme != "file" {
		return []string{fmt.Sprintf("%s: %q must be a URL starting with one of %s://", key, redactURL(v), strings.Join(schemes, ":// "))}
	}
	if u.User != nil {
		// A token often rides as the user name alone (https://TOKEN@host).
		return []string{fmt.Sprintf("%s: must not hold a user name or password (it would show in docker inspect); use [[env.token]]", key)}
	}
	return nil
}

// redactURL drops anything before an @ so that an error never repeats a
// password, even from a malformed URL.
func redactURL(v string) string {
	if i := strings.LastIndex(v, "@"); i >= 0 {
		return "..." + v[i:]
	}
	return v
}

// splitList splits a comma-separated list, dropping empty entries and the
// spaces around each.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// SplitList is splitList for the packages that build the environment.
func SplitList(s string) []string { return splitList(s) }

func isCIDR(s string) bool {
	_, _, err := net.ParseCIDR(s)
	return err == nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func isSpaceOrControl(r rune) bool { return r == ' ' || isControl(r) }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
