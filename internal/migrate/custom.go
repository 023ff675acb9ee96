package migrate

import (
	"fmt"
	"strings"
	"time"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/custom"
)

// customBlock is the [runners.custom] block to paste into gitlab-runner's
// config.toml, as TOML comments: warmcache's config stays one file that
// loads as it is, and the block is pasted by removing the leading "# ".
func customBlock(name string, o Options, cfg config.Config, runner map[string]any) string {
	s := custom.For(o.Exe, o.ConfigPath, cfg)
	if d, ok := prepareTimeout(runner); ok {
		s.SetPrepare(d, "the runner's prepare_timeout")
	}
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, "# "+format+"\n", a...) }
	b.WriteString("# ---- gitlab-runner's config.toml ----\n")
	line("In the [[runners]] entry named %q, set executor = \"custom\", delete its", name)
	line("[runners.docker] section (and [[runners.docker.services]]), and paste the")
	line("lines below inside that entry, without their leading \"# \". Everything")
	line("else in the entry (url, token, [runners.cache], ...) stays as it is.")
	b.WriteString("#\n")
	b.WriteString(s.Block("# "))
	return b.String()
}

// prepareTimeout is the runner's prepare_timeout when it has one.
func prepareTimeout(runner map[string]any) (time.Duration, bool) {
	var d time.Duration
	switch v := runner["prepare_timeout"].(type) {
	case string:
		d, _ = time.ParseDuration(v)
	case int64:
		d = time.Duration(v)
	}
	return d, d >= time.Second
}
