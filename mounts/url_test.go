package mounts_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/mounts"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    mounts.Location
		wantErr string
	}{
		{in: "s3://bucket", want: mounts.Location{Scheme: "s3", Bucket: "bucket"}},
		{in: "s3://bucket/", want: mounts.Location{Scheme: "s3", Bucket: "bucket"}},
		{in: "s3://bucket/data/train", want: mounts.Location{Scheme: "s3", Bucket: "bucket", Prefix: "data/train"}},
		{in: "s3://bucket/data/", want: mounts.Location{Scheme: "s3", Bucket: "bucket", Prefix: "data/"}},
		{in: "gs://b-1/x y", want: mounts.Location{Scheme: "gs", Bucket: "b-1", Prefix: "x y"}},
		{in: "r2://ckpts/run7", want: mounts.Location{Scheme: "r2", Bucket: "ckpts", Prefix: "run7"}},
		{in: "file:///srv/buckets/b", want: mounts.Location{Scheme: "file", Bucket: "/srv/buckets/b"}},
		{in: "file://localhost/srv/b/", want: mounts.Location{Scheme: "file", Bucket: "/srv/b"}},
		{in: "s3://", wantErr: "names no bucket"},
		{in: "s3:///path", wantErr: "names no bucket"},
		{in: "s3://b:9000/p", wantErr: "only s3://BUCKET[/PREFIX]"},
		{in: "file://rel/dir", wantErr: "absolute path"},
		{in: "file://", wantErr: "absolute path"},
		{in: "/local/dir", wantErr: "has no scheme"},
		{in: "azure://c/p", wantErr: `scheme "azure" is not supported`},
	}
	for _, tc := range tests {
		got, err := mounts.ParseURL(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseURL(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseURL(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestLocationString(t *testing.T) {
	for in, want := range map[string]string{
		"s3://b":           "s3://b",
		"s3://b/p/q":       "s3://b/p/q",
		"gs://b/p/":        "gs://b/p/",
		"file:///x/y/../z": "file:///x/z",
	} {
		loc, err := mounts.ParseURL(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := loc.String(); got != want {
			t.Errorf("ParseURL(%q).String() = %q; want %q", in, got, want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]mounts.Mode{"": mounts.ModeMount, "mount": mounts.ModeMount, "COPY": mounts.ModeCopy, "Mount_Cached": mounts.ModeMountCached} {
		if got, err := mounts.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := mounts.ParseMode("STREAM"); err == nil {
		t.Error("ParseMode(STREAM) succeeded")
	}
}

func TestOpen(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
	t.Setenv("R2_ACCOUNT_ID", "acct123")
	t.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9")
	setCABundle(t)
	tests := []struct {
		url, wantURL, wantEndpoint string
	}{
		{"s3://b/p", "s3://b", "http://127.0.0.1:9"},
		{"r2://b/p", "r2://b", "https://acct123.r2.cloudflarestorage.com"},
		{"gs://b/p", "gs://b", ""},
		{"file:///tmp/b", "file:///tmp/b", ""},
	}
	for _, tc := range tests {
		st, loc, err := mounts.Open(context.Background(), tc.url)
		if err != nil {
			t.Errorf("Open(%q): %v", tc.url, err)
			continue
		}
		if st.URL() != tc.wantURL || loc.Prefix != strings.TrimPrefix(tc.url, tc.wantURL+"/") && loc.Scheme != "file" {
			t.Errorf("Open(%q) = store %s, location %+v", tc.url, st.URL(), loc)
		}
		if s3, ok := st.(*mounts.S3Store); ok && s3.Endpoint() != tc.wantEndpoint {
			t.Errorf("Open(%q) endpoint %q; want %q", tc.url, s3.Endpoint(), tc.wantEndpoint)
		}
		st.Close()
	}
}
