package runnersim

import (
	"archive/zip"
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Private module served by PrivateModProxy.
const (
	PrivateModule  = "private.example/lib"
	PrivateVersion = "v1.0.0"
	// PrivateGreeting is what the module's Greeting returns.
	PrivateGreeting = "hello from the private module"
)

// PrivateModProxy is a Go module proxy (the GOPROXY protocol) over HTTPS
// on loopback serving one private module, PrivateModule, only to requests
// carrying the right Basic auth, like a company's private proxy or
// GitLab's Go proxy. Jobs trust its certificate through SSL_CERT_FILE.
type PrivateModProxy struct {
	// URL is https://127.0.0.1:<port>, and Host its host:port.
	URL, Host string
	// CertPEM is the server's self-signed certificate.
	CertPEM string

	srv  *httptest.Server
	mu   sync.Mutex
	seen []string
}

// StartPrivateModProxy serves PrivateModule to login:token.
func StartPrivateModProxy(login, token string) (*PrivateModProxy, error) {
	files, err := privateModuleFiles()
	if err != nil {
		return nil, err
	}
	p := &PrivateModProxy{}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		authorized := ok && user == login && pass == token
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.URL.Path+map[bool]string{true: " authorized", false: " refused"}[authorized])
		p.mu.Unlock()
		if !authorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="private modules"`)
			http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		body, found := files[r.URL.Path]
		if !found {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	p.URL = p.srv.URL
	p.Host = strings.TrimPrefix(p.srv.URL, "https://")
	p.CertPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw}))
	return p, nil
}

// Requests lists what the proxy was asked: method, path and whether the
// credentials were right.
func (p *PrivateModProxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// Close stops the proxy.
func (p *PrivateModProxy) Close() { p.srv.Close() }

// privateModuleFiles lays out the module in the GOPROXY protocol's paths.
func privateModuleFiles() (map[string][]byte, error) {
	gomod := "module " + PrivateModule + "\n\ngo 1.22\n"
	src := "// Package lib is a private module.\npackage lib\n\n// Greeting says hello.\nfunc Greeting() string { return \"" + PrivateGreeting + "\" }\n"
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	prefix := PrivateModule + "@" + PrivateVersion + "/"
	for name, content := range map[string]string{"go.mod": gomod, "lib.go": src} {
		f, err := zw.Create(prefix + name)
		if err != nil {
			return nil, err
		}
		if _, err := f.Write([]byte(content)); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	base := "/" + PrivateModule + "/@v/"
	return map[string][]byte{
		base + "list":                    []byte(PrivateVersion + "\n"),
		base + PrivateVersion + ".info":  []byte(`{"Version":"` + PrivateVersion + `","Time":"2026-01-01T00:00:00Z"}`),
		base + PrivateVersion + ".mod":   []byte(gomod),
		base + PrivateVersion + ".zip":   z.Bytes(),
		"/" + PrivateModule + "/@latest": []byte(`{"Version":"` + PrivateVersion + `","Time":"2026-01-01T00:00:00Z"}`),
	}, nil
}
