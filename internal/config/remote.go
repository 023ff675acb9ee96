package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// CacheRemote is the second cache tier ([cache.remote]): snapshots of
// cache volumes in an S3-compatible object store, so that a host new to a
// project starts warm (see internal/cache/remote).
type CacheRemote struct {
	// URL is the store's endpoint, e.g. "https://s3.eu-west-1.amazonaws.com"
	// or "http://127.0.0.1:8333"; "" is no second tier.
	URL    string `toml:"url"`
	Bucket string `toml:"bucket"`
	Region string `toml:"region"`
	// Prefix is put before every key in the bucket ("" none).
	Prefix string `toml:"prefix"`
	// AccessKeyFile and SecretKeyFile hold the credentials, read at every
	// use, so a rotation needs no restart; never in the TOML.
	AccessKeyFile string `toml:"access_key_file"`
	SecretKeyFile string `toml:"secret_key_file"`
	// Publish says which successful jobs publish snapshots: "protected",
	// "all" or "none".
	Publish string `toml:"publish"`
	// MinInterval is the least time between two snapshots of one cache.
	MinInterval time.Duration `toml:"min_interval"`
}

// Publish values.
const (
	PublishProtected = "protected"
	PublishAll       = "all"
	PublishNone      = "none"
)

// defaultRemote is [cache.remote]'s default: no second tier.
func defaultRemote() CacheRemote {
	return CacheRemote{Bucket: "warmcache", Region: "us-east-1", Publish: PublishProtected, MinInterval: 10 * time.Minute}
}

// Enabled says whether the second tier is configured.
func (r CacheRemote) Enabled() bool { return r.URL != "" }

func (r CacheRemote) validate() []string {
	var p []string
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			p = append(p, fmt.Sprintf("cache.remote.url: %q must be an http:// or https:// endpoint with no path", r.URL))
		}
		if r.AccessKeyFile == "" || r.SecretKeyFile == "" {
			p = append(p, "cache.remote.access_key_file: with cache.remote.url, both access_key_file and secret_key_file must be set")
		}
	}
	if n := len(r.Bucket); n < 3 || n > 63 || strings.Trim(r.Bucket, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
		p = append(p, fmt.Sprintf("cache.remote.bucket: %q must be 3-63 characters of a-z, 0-9, '.' and '-'", r.Bucket))
	}
	if strings.HasPrefix(r.Prefix, "/") || strings.Contains(r.Prefix, "..") || strings.Contains(r.Prefix, "//") {
		p = append(p, fmt.Sprintf("cache.remote.prefix: %q must be a relative key prefix without '..' or '//'", r.Prefix))
	}
	for _, f := range [][2]string{{"access_key_file", r.AccessKeyFile}, {"secret_key_file", r.SecretKeyFile}} {
		if f[1] != "" && !filepath.IsAbs(f[1]) {
			p = append(p, fmt.Sprintf("cache.remote.%s: %q must be an absolute path", f[0], f[1]))
		}
	}
	switch r.Publish {
	case PublishProtected, PublishAll, PublishNone:
	default:
		p = append(p, fmt.Sprintf("cache.remote.publish: %q is not one of protected, all, none", r.Publish))
	}
	if r.MinInterval < 0 {
		p = append(p, fmt.Sprintf("cache.remote.min_interval: %s must not be negative", r.MinInterval))
	}
	return p
}
