package mounts

import (
	"context"
	"testing"
)

func TestS3PathStyle(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "k")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	tests := []struct {
		endpoint  string
		force     bool
		wantPath  bool
		wantLocal bool
	}{
		{"http://127.0.0.1:9000", false, true, true},
		{"http://[::1]:9000", false, true, true},
		{"http://localhost:9000", false, true, true},
		{"http://minio.localhost", false, true, true},
		{"https://s3.example.com", false, false, false},
		{"https://s3.example.com", true, true, false},
		{"", false, false, false},
	}
	for _, tc := range tests {
		t.Setenv("AWS_ENDPOINT_URL_S3", tc.endpoint)
		t.Setenv("AWS_ENDPOINT_URL", "")
		st, err := NewS3(context.Background(), "b", S3Options{ForcePathStyle: tc.force})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.cl.Options().UsePathStyle; got != tc.wantPath {
			t.Errorf("endpoint %q force %v: path style %v; want %v", tc.endpoint, tc.force, got, tc.wantPath)
		}
		if got := isLocalEndpoint(tc.endpoint); got != tc.wantLocal {
			t.Errorf("isLocalEndpoint(%q) = %v", tc.endpoint, got)
		}
		if tc.endpoint == "" && st.regionFixed {
			t.Errorf("AWS itself: the bucket's region should be looked up")
		}
	}
}

func TestR2Endpoint(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("R2_ACCOUNT_ID", "")
	t.Setenv("CLOUDFLARE_ACCOUNT_ID", "")
	if _, err := NewS3(context.Background(), "b", S3Options{R2: true}); err == nil {
		t.Errorf("R2 without an account ID: no error")
	}
	t.Setenv("CLOUDFLARE_ACCOUNT_ID", "abc")
	st, err := NewS3(context.Background(), "b", S3Options{R2: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Endpoint() != "https://abc.r2.cloudflarestorage.com" || st.URL() != "r2://b" || st.cl.Options().Region != "auto" {
		t.Errorf("R2 store: endpoint %q, url %q, region %q", st.Endpoint(), st.URL(), st.cl.Options().Region)
	}
}
