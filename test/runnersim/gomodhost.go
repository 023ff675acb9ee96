package runnersim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// GoModHost is a GitLab-like host for private Go modules: HTTPS on port
// 443 of a loopback address of its own (module paths cannot carry a
// port), answering ?go-get=1 with a go-import tag and serving the
// repository over smart HTTP, both only to gitlab-ci-token with the job
// token. Go fetches a module from it the way it fetches a private module
// from a GitLab instance listed in GOPRIVATE: discovery with netrc
// credentials, then git.
type GoModHost struct {
	// IP is the host's address, also the first element of Module.
	IP string
	// Module is the module the repository holds, tagged PrivateVersion.
	Module string
	// CertPEM is the host's self-signed certificate, for SSL_CERT_FILE
	// (Go) and GIT_SSL_CAINFO (git).
	CertPEM string

	root string
	srv  *http.Server
}

// StartGoModHost serves the module on the first free address of
// 127.x.y.z:443 derived from the process id.
func StartGoModHost(token string) (*GoModHost, error) {
	ln, ip, err := listenLoopback443()
	if err != nil {
		return nil, err
	}
	cert, certPEM, err := selfSignedCert(ip)
	if err != nil {
		ln.Close()
		return nil, err
	}
	root, err := os.MkdirTemp("", "warmcache-gomodhost")
	if err != nil {
		ln.Close()
		return nil, err
	}
	h := &GoModHost{IP: ip, Module: ip + "/group/privmod", CertPEM: certPEM, root: root}
	if _, err := makeRepo(root, map[string]string{
		"go.mod": "module " + h.Module + "\n\ngo 1.22\n",
		"lib.go": "// Package privmod is a private module.\npackage privmod\n\n// Greeting says hello.\nfunc Greeting() string { return \"" + PrivateGreeting + "\" }\n",
	}); err != nil {
		ln.Close()
		os.RemoveAll(root)
		return nil, err
	}
	bare := filepath.Join(root, "repos", "group", "project.git")
	if out, err := exec.Command("git", "-C", bare, "tag", PrivateVersion, "main").CombinedOutput(); err != nil {
		ln.Close()
		os.RemoveAll(root)
		return nil, fmt.Errorf("tagging the module: %w\n%s", err, out)
	}
	h.srv = &http.Server{
		Handler:           gitHandler(root, token, h.Module+" git https://"+ip+"/group/project.git"),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go h.srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}))
	return h, nil
}

// Close stops the host and removes the repository.
func (h *GoModHost) Close() error {
	return errors.Join(h.srv.Close(), os.RemoveAll(h.root))
}

// listenLoopback443 listens on port 443 of an address in 127/8 picked from
// the process id, so concurrent test processes do not meet.
func listenLoopback443() (net.Listener, string, error) {
	pid := os.Getpid()
	var errs []error
	for i := range 8 {
		n := pid*8 + i
		ip := fmt.Sprintf("127.%d.%d.%d", 100+n>>16%100, n>>8%256, 1+n%250)
		ln, err := net.Listen("tcp", ip+":443")
		if err == nil {
			return ln, ip, nil
		}
		errs = append(errs, err)
	}
	return nil, "", fmt.Errorf("no free loopback address for port 443: %w", errors.Join(errs...))
}

// selfSignedCert makes a certificate for ip that is its own root.
func selfSignedCert(ip string) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: ip},
		IPAddresses:           []net.IP{net.ParseIP(ip)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, string(certPEM), nil
}
