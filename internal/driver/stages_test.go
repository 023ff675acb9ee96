package driver

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/plan"
)

func TestStageCommand(t *testing.T) {
	wantDetect := "if [ -x /usr/local/bin/bash ]; then exec /usr/local/bin/bash; " +
		"elif [ -x /usr/bin/bash ]; then exec /usr/bin/bash; " +
		"elif [ -x /bin/bash ]; then exec /bin/bash; " +
		"elif [ -x /usr/local/bin/sh ]; then exec /usr/local/bin/sh; " +
		"elif [ -x /usr/bin/sh ]; then exec /usr/bin/sh; " +
		"elif [ -x /bin/sh ]; then exec /bin/sh; " +
		"elif [ -x /busybox/sh ]; then exec /busybox/sh; " +
		"else echo shell not found >&2; exit 1; fi"
	if detectShell != wantDetect {
		t.Errorf("detectShell =\n%s\nwant\n%s", detectShell, wantDetect)
	}
	if got := stageCommand(naming.KindBuild); !slices.Equal(got, []string{"sh", "-c", wantDetect}) {
		t.Errorf("build command = %q", got)
	}
	helper := stageCommand(naming.KindHelper)
	if len(helper) != 3 || helper[0] != "sh" || helper[1] != "-c" ||
		!strings.HasPrefix(helper[2], helperPrelude) || !strings.HasSuffix(helper[2], wantDetect) {
		t.Errorf("helper command = %q", helper)
	}
	// The programs must at least parse as POSIX sh.
	for _, prog := range []string{detectShell, helper[2], plan.KeepAlive[2]} {
		if out, err := exec.Command("sh", "-n", "-c", prog).CombinedOutput(); err != nil {
			t.Errorf("sh -n rejects %q: %v: %s", prog, err, out)
		}
	}
}
