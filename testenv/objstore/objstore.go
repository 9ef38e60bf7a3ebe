// Package objstore starts object-store endpoints in-process for tests and
// benchmarks: an S3 endpoint (gofakes3, objects in memory) and a GCS
// endpoint (fake-gcs-server), both plain HTTP on a loopback port, with the
// environment variables that point the AWS and Google clients at them.
//
// Both serve HTTP, not HTTPS, so AWS_CA_BUNDLE (set on some machines, this
// one included) is never used to verify them; the AWS SDK still loads it,
// so clients must let the SDK build its own HTTP transport.
package objstore

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Options place an endpoint and seed it.
type Options struct {
	// Addr is the listen address; "127.0.0.1:0" when empty. Use a bridge
	// address to reach the endpoint from test hosts in other network
	// namespaces.
	Addr string
	// Buckets are created empty at start.
	Buckets []string
}

// Test credentials: the fakes accept any.
const (
	AccessKeyID     = "sky-coord-test"
	SecretAccessKey = "sky-coord-test-secret"
	Region          = "us-east-1"
)

// S3 is a running in-memory S3 endpoint.
type S3 struct {
	// URL is the endpoint, as http://127.0.0.1:PORT.
	URL string
	// Backend holds the objects; tests may read and seed it directly.
	Backend *s3mem.Backend

	srv *http.Server
}

// NewS3 starts an S3 endpoint; Close stops it.
func NewS3(opts Options) (*S3, error) {
	backend := s3mem.New()
	for _, b := range opts.Buckets {
		if err := backend.CreateBucket(b); err != nil {
			return nil, fmt.Errorf("fake S3: create bucket %q: %w", b, err)
		}
	}
	faker := gofakes3.New(backend, gofakes3.WithTimeSkewLimit(0))
	ln, err := listen(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("fake S3: %w", err)
	}
	srv := &http.Server{Handler: faker.Server(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &S3{URL: "http://" + ln.Addr().String(), Backend: backend, srv: srv}, nil
}

// StartS3 starts an S3 endpoint that stops when t ends.
func StartS3(t testing.TB, opts Options) *S3 {
	t.Helper()
	s, err := NewS3(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Close stops the endpoint.
func (s *S3) Close() error { return s.srv.Close() }

// Env is what points the AWS SDK (and the mounts package) at the endpoint,
// with credentials it accepts.
func (s *S3) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_S3":       s.URL,
		"AWS_ACCESS_KEY_ID":         AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":     SecretAccessKey,
		"AWS_REGION":                Region,
		"AWS_EC2_METADATA_DISABLED": "true",
	}
}

// Setenv sets Env for the rest of the test (not with t.Parallel).
func (s *S3) Setenv(t testing.TB) {
	t.Helper()
	for k, v := range s.Env() {
		t.Setenv(k, v)
	}
}

// WriteAWSFiles writes home/.aws/credentials (mode 0600) and
// home/.aws/config for the endpoint's credentials and region, for
// processes that read files rather than the environment. It returns the
// credentials file's path. The endpoint itself still comes from
// AWS_ENDPOINT_URL_S3.
func (s *S3) WriteAWSFiles(home string) (string, error) {
	dir := filepath.Join(home, ".aws")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	creds := filepath.Join(dir, "credentials")
	body := "[default]\naws_access_key_id = " + AccessKeyID + "\naws_secret_access_key = " + SecretAccessKey + "\n"
	if err := os.WriteFile(creds, []byte(body), 0o600); err != nil {
		return "", err
	}
	if err := os.Chmod(creds, 0o600); err != nil {
		return "", err
	}
	cfg := "[default]\nregion = " + Region + "\n"
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o600); err != nil {
		return "", err
	}
	return creds, nil
}

// GCS is a running in-memory GCS endpoint.
type GCS struct {
	// Host is host:port, the value of STORAGE_EMULATOR_HOST.
	Host string
	// URL is http://Host.
	URL string
	// Server is the fake; tests may seed and inspect it directly.
	Server *fakestorage.Server

	srv *http.Server
}

// NewGCS starts a GCS endpoint; Close stops it.
func NewGCS(opts Options) (*GCS, error) {
	ln, err := listen(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("fake GCS: %w", err)
	}
	host := ln.Addr().String()
	// The fake serves downloads (the XML API, and the JSON API's media
	// links) only to requests for its PublicHost, so that must be the
	// address clients use. It is known only once listening, so the fake
	// runs without a listener of its own behind ours.
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		NoListener:  true,
		Scheme:      "http",
		PublicHost:  host,
		ExternalURL: "http://" + host,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("fake GCS: %w", err)
	}
	for _, b := range opts.Buckets {
		fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	srv := &http.Server{Handler: fake.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &GCS{Host: host, URL: "http://" + host, Server: fake, srv: srv}, nil
}

// StartGCS starts a GCS endpoint that stops when t ends.
func StartGCS(t testing.TB, opts Options) *GCS {
	t.Helper()
	g, err := NewGCS(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// Close stops the endpoint.
func (g *GCS) Close() error {
	err := g.srv.Close()
	g.Server.Stop()
	return err
}

// Env is what points cloud.google.com/go/storage at the endpoint.
func (g *GCS) Env() map[string]string {
	return map[string]string{
		"STORAGE_EMULATOR_HOST": g.Host,
		"GOOGLE_CLOUD_PROJECT":  "sky-coord-test",
	}
}

// Setenv sets Env for the rest of the test (not with t.Parallel).
func (g *GCS) Setenv(t testing.TB) {
	t.Helper()
	for k, v := range g.Env() {
		t.Setenv(k, v)
	}
}

// Environ renders env as sorted KEY=VALUE lines, for exec.Cmd.Env.
func Environ(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if !strings.Contains(addr, ":") {
		return nil, errors.New("listen address " + addr + " needs a port (0 for any)")
	}
	return net.Listen("tcp", addr)
}
