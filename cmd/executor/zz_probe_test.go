package main

import ("testing"; "fmt"; "bytes")

func TestProbe(t *testing.T) {
	t.Setenv("WARMCACHE_CONFIG", "")
	for _, args := range [][]string{
		{"warmcache", "bogus"},
		{"warmcache"},
		{"warmcache", "--nope", "config"},
		{"warmcache", "run"},
		{"warmcache", "config", "extra"},
	} {
		var o, e bytes.Buffer
		code := run(args, &o, &e)
		fmt.Printf("%q -> %d\nstdout=%q\nstderr=%q\n", args, code, o.String(), e.String())
	}
}
