package mounts_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/mounts/storetest"
	"github.com/sky-coord/sky-coord/testenv/objstore"
)

// setCABundle sets AWS_CA_BUNDLE, as this machine and many corporate ones
// do: the stores must keep working with it.
func setCABundle(t *testing.T) {
	for _, p := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"} {
		if _, err := os.Stat(p); err == nil {
			t.Setenv("AWS_CA_BUNDLE", p)
			return
		}
	}
}

func TestS3Contract(t *testing.T) {
	s := objstore.StartS3(t, objstore.Options{})
	s.Setenv(t)
	setCABundle(t)
	storetest.Run(t, func(t *testing.T, bucket string) mounts.Store {
		st, err := mounts.NewS3(context.Background(), bucket, mounts.S3Options{PartSize: 5 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if st.Endpoint() != s.URL {
			t.Fatalf("endpoint %q; want %q from AWS_ENDPOINT_URL_S3", st.Endpoint(), s.URL)
		}
		return st
	})
}

func TestR2Contract(t *testing.T) {
	s := objstore.StartS3(t, objstore.Options{})
	s.Setenv(t)
	setCABundle(t)
	storetest.Run(t, func(t *testing.T, bucket string) mounts.Store {
		st, err := mounts.NewS3(context.Background(), bucket, mounts.S3Options{R2: true, Endpoint: s.URL, PartSize: 5 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestGCSContract(t *testing.T) {
	g := objstore.StartGCS(t, objstore.Options{})
	g.Setenv(t)
	storetest.Run(t, func(t *testing.T, bucket string) mounts.Store {
		st, err := mounts.NewGCS(context.Background(), bucket, mounts.GCSOptions{ChunkSize: 5 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestLocalContract(t *testing.T) {
	dir := t.TempDir()
	storetest.Run(t, func(t *testing.T, bucket string) mounts.Store {
		return mounts.NewLocal(filepath.Join(dir, bucket))
	})
}

// Missing credentials are ErrCredentials, with a hint, at the first
// request.
func TestS3MissingCredentials(t *testing.T) {
	s := objstore.StartS3(t, objstore.Options{Buckets: []string{"b"}})
	home := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_S3": s.URL, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "HOME": home, "AWS_CONFIG_FILE": filepath.Join(home, "none"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "none"), "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "",
	} {
		t.Setenv(k, v)
	}
	st, err := mounts.NewS3(context.Background(), "b", mounts.S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.BucketExists(context.Background())
	if !errors.Is(err, mounts.ErrCredentials) || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("BucketExists without credentials = %v; want ErrCredentials saying what to set", err)
	}
}
