package objstore

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func TestEndpoints(t *testing.T) {
	s := StartS3(t, Options{Buckets: []string{"a"}})
	g := StartGCS(t, Options{Buckets: []string{"b"}})
	resp, err := http.Get(s.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("S3 list of bucket a: %s", resp.Status)
	}
	resp, err = http.Get(g.URL + "/storage/v1/b/b")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GCS get of bucket b: %s", resp.Status)
	}
	if s.Env()["AWS_ENDPOINT_URL_S3"] != s.URL || g.Env()["STORAGE_EMULATOR_HOST"] != g.Host {
		t.Errorf("Env does not point at the endpoints: %v %v", s.Env(), g.Env())
	}
	creds, err := s.WriteAWSFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(creds)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials file %v, %v; want mode 0600", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(creds)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf(".aws directory %v, %v; want mode 0700", fi, err)
	}
}
