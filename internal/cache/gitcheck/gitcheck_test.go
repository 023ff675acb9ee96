package gitcheck

import (
	"io/fs"
	"testing"
	"testing/fstest"
)

// checkout is a healthy checkout of group/project, as the runner's
// get_sources leaves it, plus extra files.
func checkout(extra fstest.MapFS) fstest.MapFS {
	m := fstest.MapFS{
		"group/project/.git/HEAD":                  {Data: []byte("ref: refs/heads/main\n")},
		"group/project/.git/objects/pack/p.pack":   {Data: []byte("PACK")},
		"group/project/.git/refs/heads/main":       {Data: []byte("4857f0ca\n")},
		"group/project/main.go":                    {Data: []byte("package main\n")},
		"group/project.tmp/git-template/config":    {Data: []byte("[init]\n")},
		"group/project/vendor/x/.git/index.lock":   {Data: nil}, // inside the work tree: not looked at
		"group/project/vendor/x/.git/shallow.lock": {Data: nil},
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return m
}

func TestCheckoutDamage(t *testing.T) {
	for _, tt := range []struct {
		name string
		fsys fs.FS
		want string
	}{
		{"empty volume", fstest.MapFS{}, ""},
		{"healthy", checkout(nil), ""},
		{"no checkout yet, only the runner's temp dir", fstest.MapFS{"group/project.tmp/x": {}}, ""},
		{"interrupted fetch", checkout(fstest.MapFS{"group/project/.git/index.lock": {}}), "group/project/.git/index.lock: a git command was interrupted"},
		{"interrupted shallow fetch", checkout(fstest.MapFS{"group/project/.git/shallow.lock": {}}), "group/project/.git/shallow.lock: a git command was interrupted"},
		{"missing HEAD", checkout(fstest.MapFS{"group/project/.git/HEAD": nil}), "group/project/.git/HEAD is missing"},
		{"HEAD is a directory", checkout(fstest.MapFS{"group/project/.git/HEAD": nil, "group/project/.git/HEAD/x": {}}), "group/project/.git/HEAD is missing"},
		{"HEAD is a link", checkout(fstest.MapFS{"group/project/.git/HEAD": {Mode: fs.ModeSymlink, Data: []byte("/etc/passwd")}}), "group/project/.git/HEAD is missing"},
		{"missing objects", checkout(fstest.MapFS{"group/project/.git/objects/pack/p.pack": nil}), "group/project/.git/objects is missing"},
		{"nested group", fstest.MapFS{"a/b/c/project/.git/HEAD": {}, "a/b/c/project/.git/objects/x": {}, "a/b/c/project/.git/config.lock": {}},
			"a/b/c/project/.git/config.lock: a git command was interrupted"},
		{"linked to its store, not yet made by git init", fstest.MapFS{"group/project/.git/objects/info/alternates": {}}, ""},
		{"too deep to look at", fstest.MapFS{"1/2/3/4/5/6/7/8/9/.git/index.lock": {}}, ""},
		{".git as a link is not followed", fstest.MapFS{"group/project/.git": {Mode: fs.ModeSymlink, Data: []byte("/")}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Damage(tt.fsys); got != tt.want {
				t.Errorf("Damage = %q, want %q", got, tt.want)
			}
		})
	}
}
