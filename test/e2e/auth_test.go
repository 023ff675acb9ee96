package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/naming"
)

// authJSON is a docker config.json logging in to the test registry.
func authJSON(reg *loopRegistry) string {
	auth := base64.StdEncoding.EncodeToString([]byte(reg.User + ":" + reg.Password))
	return fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Host, auth)
}

// callWithEnv runs a driver stage of j with extra variables in the
// driver's own environment (later entries win).
func callWithEnv(t *testing.T, j *job, env []string, args ...string) result {
	t.Helper()
	cmd := j.Command(args...)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := 0
	if err := cmd.Run(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatal(err)
		}
		code = ee.ExitCode()
	}
	return result{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// authConfig is the suite's config with a structured debug log at
// logFile, for the secrets check.
func authConfig(logFile string) string {
	return defaultConfig + fmt.Sprintf("[log]\nfile = %q\nlevel = \"debug\"\n", logFile)
}

// noSecretsAnywhere fails the test if a secret is in the driver's
// output, the structured log or `docker inspect` of the job's helper and
// build containers.
func noSecretsAnywhere(t *testing.T, j *job, logFile string, rs []result, secrets ...string) {
	t.Helper()
	var where []string
	var blobs [][]byte
	for _, r := range rs {
		where, blobs = append(where, "the driver's output"), append(blobs, []byte(r.Stdout+r.Stderr))
	}
	structured, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("structured log: %v", err)
	}
	where, blobs = append(where, "the structured log"), append(blobs, structured)
	key := loadJob(t, j).Key()
	for _, kind := range []naming.Kind{naming.KindHelper, naming.KindBuild} {
		out, err := exec.Command("docker", "inspect", key.Name(kind)).CombinedOutput()
		if err != nil {
			t.Fatalf("docker inspect: %v\n%s", err, out)
		}
		where, blobs = append(where, "docker inspect "+key.Name(kind)), append(blobs, out)
	}
	for i, b := range blobs {
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("secret %.6s... found in %s", s, where[i])
			}
		}
	}
}

// TestAuthDockerAuthConfig: a private image is pulled with the login of
// the job's DOCKER_AUTH_CONFIG variable, which the job log names as the
// source; the password is in no log and no container's inspect output.
func TestAuthDockerAuthConfig(t *testing.T) {
	reg := startRegistry(t, true)
	ref, mark := reg.pushImage(t)
	logFile := filepath.Join(t.TempDir(), "warmcache.log")
	j := newJob(t, jobSpec{Image: ref, PullPolicy: []string{"always"}, Config: authConfig(logFile),
		Vars: map[string]string{"DOCKER_AUTH_CONFIG": authJSON(reg)}})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare: %s", r)
	}
	if want := "Authenticating with credentials from $DOCKER_AUTH_CONFIG"; !hasLine(r.Stderr, want) {
		t.Errorf("prepare's job log lacks the line %q:\n%s", want, r.Stderr)
	}
	run := runsImage(t, j, mark)
	noSecretsAnywhere(t, j, logFile, []result{r, run}, reg.Password, base64.StdEncoding.EncodeToString([]byte(reg.User+":"+reg.Password)))
}

// TestAuthBadDockerAuthConfig: a DOCKER_AUTH_CONFIG that is not JSON is
// one warning line, as under the Docker executor, and the job goes on:
// here the registry then refuses the pull without a login.
func TestAuthBadDockerAuthConfig(t *testing.T) {
	reg := startRegistry(t, true)
	ref, _ := reg.pushImage(t)
	j := newJob(t, jobSpec{Image: ref, PullPolicy: []string{"always"}, Config: pullConfig(1),
		Vars: map[string]string{"DOCKER_AUTH_CONFIG": `{"auths": {`}})
	r := j.prepare()
	if r.Code != systemFailureCode {
		t.Fatalf("prepare: want exit %d, got %s", systemFailureCode, r)
	}
	want := "WARNING: Failed to resolve credentials from $DOCKER_AUTH_CONFIG: unexpected EOF. Credentials from this source will not be used."
	if !hasLine(r.Stderr, want) {
		t.Errorf("prepare's job log lacks the line %q:\n%s", want, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "no basic auth credentials") {
		t.Errorf("prepare's job log lacks the registry's refusal:\n%s", r.Stderr)
	}
}

// TestAuthRunnerDockerConfig: the runner user's ~/.docker/config.json
// logs in, with its auths or through a credential helper it names
// (docker-credential-<name> on the driver's PATH), as under the Docker
// executor.
func TestAuthRunnerDockerConfig(t *testing.T) {
	reg := startRegistry(t, true)
	helper := fmt.Sprintf(`#!/bin/sh
[ "$1" = get ] || exit 1
read -r server
[ "$server" = %q ] || { echo "credentials not found in native keychain"; exit 1; }
printf '{"ServerURL":"%%s","Username":"%%s","Secret":"%%s"}' %q %q %q
`, reg.Host, reg.Host, reg.User, reg.Password)
	for name, config := range map[string]string{
		"auths":       authJSON(reg),
		"credHelpers": fmt.Sprintf(`{"credHelpers": {%q: "warmcache-e2e"}}`, reg.Host),
	} {
		t.Run(name, func(t *testing.T) {
			ref, mark := reg.pushImage(t)
			home, bin := t.TempDir(), t.TempDir()
			if err := os.MkdirAll(filepath.Join(home, ".docker"), 0o700); err != nil {
				t.Fatal(err)
			}
			configFile := filepath.Join(home, ".docker", "config.json")
			if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bin, "docker-credential-warmcache-e2e"), []byte(helper), 0o700); err != nil {
				t.Fatal(err)
			}
			logFile := filepath.Join(t.TempDir(), "warmcache.log")
			j := newJob(t, jobSpec{Image: ref, PullPolicy: []string{"always"}, Config: authConfig(logFile)})
			r := callWithEnv(t, j, []string{"HOME=" + home, "PATH=" + bin + ":" + os.Getenv("PATH")}, "prepare")
			if r.Code != 0 {
				t.Fatalf("prepare: %s", r)
			}
			if want := "Authenticating with credentials from " + configFile; !hasLine(r.Stderr, want) {
				t.Errorf("prepare's job log lacks the line %q:\n%s", want, r.Stderr)
			}
			run := runsImage(t, j, mark)
			noSecretsAnywhere(t, j, logFile, []result{r, run}, reg.Password)
		})
	}
}

// TestAuthTLSEngine: a job runs on an engine reached over TLS with a
// client certificate (docker.tls_verify, docker.tls_cert_path): a proxy
// of the test's on loopback terminates TLS, requires the certificate and
// forwards to the engine's socket. The same job against the proxy
// without tls_verify fails.
func TestAuthTLSEngine(t *testing.T) {
	pki := newTestPKI(t)
	proxy := startTLSProxy(t, pki, "/var/run/docker.sock")
	certs := t.TempDir()
	for name, data := range map[string][]byte{"ca.pem": pki.caPEM, "cert.pem": pki.clientCert, "key.pem": pki.clientKey} {
		if err := os.WriteFile(filepath.Join(certs, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := defaultConfig + fmt.Sprintf("host = \"tcp://%s\"\ntls_verify = true\ntls_cert_path = %q\n", proxy.addr, certs)
	j := newJob(t, jobSpec{Config: config})
	r := j.prepare()
	if r.Code != 0 {
		t.Fatalf("prepare over TLS: %s", r)
	}
	run := j.run("build_script", runnerScript("echo over-tls\n"))
	if run.Code != 0 || run.Stdout != "over-tls\n" {
		t.Errorf("build_script over TLS: %s", run)
	}
	if c := j.cleanup(); c.Code != 0 {
		t.Errorf("cleanup over TLS: %s", c)
	}
	if n := proxy.handshakes(); n == 0 {
		t.Errorf("no TLS connection reached the proxy")
	}

	// Without docker.host in the file, DOCKER_HOST, DOCKER_TLS_VERIFY and
	// DOCKER_CERT_PATH of the driver's environment name the same engine.
	before := proxy.handshakes()
	fromEnv := newJob(t, jobSpec{})
	env := []string{"DOCKER_HOST=tcp://" + proxy.addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + certs}
	if r := callWithEnv(t, fromEnv, env, "prepare"); r.Code != 0 {
		t.Fatalf("prepare with the DOCKER_ variables: %s", r)
	}
	if proxy.handshakes() == before {
		t.Errorf("prepare with the DOCKER_ variables did not go through the TLS proxy")
	}

	plain := newJob(t, jobSpec{Config: defaultConfig + fmt.Sprintf("host = \"tcp://%s\"\n", proxy.addr)})
	if r := plain.prepare(); r.Code != systemFailureCode || !strings.Contains(r.Stderr, "docker engine unreachable") {
		t.Errorf("prepare without TLS against a TLS engine: want exit %d and the engine unreachable, got %s", systemFailureCode, r)
	}
	// Its cleanup at the test's end reaches the engine as it should.
	if err := plain.SetConfig(config); err != nil {
		t.Fatal(err)
	}
}

// tlsProxy accepts TLS connections with a client certificate of the test
// CA and forwards each to a unix socket.
type tlsProxy struct {
	addr string
	mu   sync.Mutex
	n    int
}

func (p *tlsProxy) handshakes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func startTLSProxy(t *testing.T, pki testPKI, socket string) *tlsProxy {
	t.Helper()
	cert, err := tls.X509KeyPair(pki.serverCert, pki.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &tlsProxy{addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				p.mu.Lock()
				p.n++
				p.mu.Unlock()
				up, err := net.Dial("unix", socket)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{})
				go func() { io.Copy(up, c); up.(*net.UnixConn).CloseWrite(); close(done) }()
				io.Copy(c, up)
				c.(*tls.Conn).CloseWrite()
				<-done
			}()
		}
	}()
	return p
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM.
type testPKI struct {
	caPEM, serverCert, serverKey, clientCert, clientKey []byte
	pool                                                *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warmcache e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "warmcache e2e"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	p := testPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.serverCert, p.serverKey = leaf(2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = leaf(3, x509.ExtKeyUsageClientAuth, nil)
	return p
}
