package credentials

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/job"
	"golang.org/x/mod/module"
)

// loopback is always in NO_PROXY: curl would otherwise send even
// localhost through the proxy.
var loopback = []string{"localhost", "127.0.0.1", "::1"}

// group is variables set together and left out together: when the job
// sets any of names, none of them is set.
type group struct {
	names []string
	value string
	// fold compares names case-insensitively: curl reads both spellings
	// of the proxy variables and npm's settings ignore case.
	fold bool
}

// gitHelper is git's credential helper for the delivered store. It only
// answers "get", so git's "store" and "erase" (the runner's scripts erase
// the job token after fetching) never rewrite the file. It comes after
// any helper the image or the job configures: theirs are asked first, and
// a store helper of theirs keeps what git approves, as it would anyway.
var gitHelper = `!f() { if [ "$1" = get ]; then git credential-store --file=` + SecretsDir + "/" + GitFile + ` get; fi; }; f`

// compose lists the container variables for the job.
func compose(cfg config.Env, j job.Job, files []File, aliases []string) []string {
	set := map[string]bool{}
	for _, v := range j.Variables {
		set[v.Key] = true
	}
	jobSets := func(g group) bool {
		for _, n := range g.names {
			for k := range set {
				if k == n || g.fold && strings.EqualFold(k, n) {
					return true
				}
			}
		}
		return false
	}
	has := map[string]bool{}
	for _, f := range files {
		has[f.Name] = true
	}

	proxied := cfg.HTTPProxy != "" || cfg.HTTPSProxy != ""
	var noProxy string
	if proxied || cfg.NoProxy != "" {
		noProxy = strings.Join(noProxyList(cfg, aliases), ",")
	}
	httpG := group{names: []string{"http_proxy", "HTTP_PROXY", "npm_config_proxy"}, value: cfg.HTTPProxy, fold: true}
	httpsG := group{names: []string{"https_proxy", "HTTPS_PROXY", "npm_config_https_proxy"}, value: cfg.HTTPSProxy, fold: true}
	groups := []group{
		httpG, httpsG,
		{names: []string{"no_proxy", "NO_PROXY", "npm_config_noproxy"}, value: noProxy, fold: true},
		{names: []string{"GOPROXY"}, value: cfg.GoProxy},
		{names: []string{"GOPRIVATE"}, value: strings.Join(goPrivate(cfg, j), ",")},
		{names: []string{"GONOPROXY"}, value: cfg.GoNoProxy},
		{names: []string{"GONOSUMDB"}, value: cfg.GoNoSumDB},
		{names: []string{"GOSUMDB"}, value: cfg.GoSumDB},
		{names: []string{"GOFLAGS"}, value: cfg.GoFlags},
	}
	if has[NetrcFile] {
		groups = append(groups, group{names: []string{"NETRC"}, value: SecretsDir + "/" + NetrcFile})
	}
	if has[NPMFile] {
		// npm's global config file: the user's ~/.npmrc and the
		// project's .npmrc still apply over it.
		groups = append(groups, group{names: []string{"npm_config_globalconfig"}, value: SecretsDir + "/" + NPMFile, fold: true})
	}

	// git reads one proxy for every scheme from http.proxy; it is set
	// only when that is unambiguous. git honours no_proxy with it.
	var gitConfig [][2]string
	if has[GitFile] {
		gitConfig = append(gitConfig, [2]string{"credential.helper", gitHelper})
	}
	if p := gitProxy(cfg); p != "" && !jobSets(httpG) && !jobSets(httpsG) {
		gitConfig = append(gitConfig, [2]string{"http.proxy", p})
	}
	if len(gitConfig) > 0 && !jobSetsGitConfig(set) {
		names := []string{"GIT_CONFIG_COUNT"}
		values := []string{strconv.Itoa(len(gitConfig))}
		for i, kv := range gitConfig {
			names = append(names, "GIT_CONFIG_KEY_"+strconv.Itoa(i), "GIT_CONFIG_VALUE_"+strconv.Itoa(i))
			values = append(values, kv[0], kv[1])
		}
		for i := range names {
			groups = append(groups, group{names: []string{names[i]}, value: values[i]})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Extra)) {
		groups = append(groups, group{names: []string{k}, value: cfg.Extra[k]})
	}

	var env []string
	for _, g := range groups {
		if g.value == "" || jobSets(g) {
			continue
		}
		for _, n := range g.names {
			env = append(env, n+"="+g.value)
		}
	}
	return env
}

// jobSetsGitConfig says whether the job configures git through the
// environment itself; ours would then clash with its numbering.
func jobSetsGitConfig(set map[string]bool) bool {
	for k := range set {
		if k == "GIT_CONFIG_COUNT" || strings.HasPrefix(k, "GIT_CONFIG_KEY_") || strings.HasPrefix(k, "GIT_CONFIG_VALUE_") {
			return true
		}
	}
	return false
}

// gitProxy is the one proxy git gets, or "" when http and https differ.
func gitProxy(cfg config.Env) string {
	switch {
	case cfg.HTTPProxy == "":
		return cfg.HTTPSProxy
	case cfg.HTTPSProxy == "" || cfg.HTTPSProxy == cfg.HTTPProxy:
		return cfg.HTTPProxy
	}
	return ""
}

// noProxyList is the admin's no_proxy plus loopback, the service aliases
// and the hosts of the private module patterns.
func noProxyList(cfg config.Env, aliases []string) []string {
	var out []string
	add := func(h string) {
		if h != "" && !contains(out, h) {
			out = append(out, h)
		}
	}
	for _, h := range config.SplitList(cfg.NoProxy) {
		add(h)
	}
	for _, h := range loopback {
		add(h)
	}
	for _, a := range aliases {
		add(a)
	}
	for _, p := range config.SplitList(cfg.GoPrivate + "," + cfg.GoNoProxy) {
		add(patternHost(p))
	}
	return out
}

// patternHost turns a module path pattern into a NO_PROXY entry: its
// first element, "*.corp.example" as the domain ".corp.example"; other
// globs cannot be expressed and give "".
func patternHost(p string) string {
	first, _, _ := strings.Cut(p, "/")
	if rest, ok := strings.CutPrefix(first, "*."); ok {
		first = "." + rest
	}
	if strings.ContainsAny(first, "*?[]\\") || !strings.Contains(first, ".") {
		return ""
	}
	return first
}

// goPrivate is the admin's GOPRIVATE plus, with the job token on, the
// job's own GitLab host, whose modules the token can fetch.
func goPrivate(cfg config.Env, j job.Job) []string {
	list := config.SplitList(cfg.GoPrivate)
	if !cfg.JobToken {
		return list
	}
	_, host := serverHost(j)
	if host = hostname(host); host == "" {
		return list
	}
	// Covered already when a pattern matches it as the go command matches
	// GOPRIVATE ("*.example.com", "gitlab.example.com/").
	if module.MatchPrefixPatterns(strings.Join(list, ","), host) {
		return list
	}
	return append(list, host)
}

// contains reports whether list holds s, ignoring case as host names do.
func contains(list []string, s string) bool {
	return slices.ContainsFunc(list, func(v string) bool { return strings.EqualFold(v, s) })
}
