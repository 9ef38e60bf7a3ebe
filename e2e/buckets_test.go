package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/testenv"
	"github.com/sky-coord/sky-coord/testenv/objstore"
)

func putObject(t *testing.T, url, data string) {
	t.Helper()
	st, loc, err := mounts.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Write(context.Background(), loc.Prefix, strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func getObject(t *testing.T, url string) (string, error) {
	t.Helper()
	st, loc, err := mounts.Open(context.Background(), url)
	if err != nil {
		return "", err
	}
	defer st.Close()
	rc, err := st.Read(context.Background(), loc.Prefix, 0, -1)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func bucketExists(t *testing.T, url string) bool {
	t.Helper()
	st, _, err := mounts.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ok, err := st.BucketExists(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestBucketsOnEveryNode runs a 2-node job with a COPY, a MOUNT and a
// MOUNT_CACHED bucket and a bucket made from a local directory, against an
// S3 endpoint on loopback: every rank reads the seeded objects, what the
// job writes under the cached mount is in the bucket when the job is
// reported SUCCEEDED, and down deletes only the persistent: false bucket
// sky-coord created.
func TestBucketsOnEveryNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("MOUNT and MOUNT_CACHED mount FUSE file systems, which takes root (CI runs as root)")
	}
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		t.Skipf("/dev/fuse is not usable here: %v", err)
	} else {
		f.Close()
	}
	s3 := objstore.StartS3(t, objstore.Options{Buckets: []string{"seeded"}})
	s3.Setenv(t)
	putObject(t, "s3://seeded/data/a.txt", "seeded a\n")
	putObject(t, "s3://seeded/data/sub/b.txt", "seeded b\n")

	cli := testenv.NewCLI(t)
	cli.Env = objstore.Environ(s3.Env())
	cli.WriteFile("up/u.txt", "uploaded from the laptop\n")
	cli.WriteFile("task.yaml", `num_nodes: 2
file_mounts:
  /copied: s3://seeded/data
  /mounted:
    source: s3://seeded
    mode: MOUNT
  /cached:
    name: sky-coord-e2e-cached
    mode: MOUNT_CACHED
    persistent: false
  /up:
    name: sky-coord-e2e-up
    source: ./up
run: |
  echo "R$SKYPILOT_NODE_RANK $(cat /copied/a.txt /copied/sub/b.txt /mounted/data/a.txt /up/u.txt | tr '\n' '|')"
  head -c 200000 /dev/urandom > /cached/big-$SKYPILOT_NODE_RANK.bin
  echo "from rank $SKYPILOT_NODE_RANK" > /cached/out-$SKYPILOT_NODE_RANK.txt
`)
	res := cli.Run("launch", "-y", "-c", "buckets", "task.yaml")
	if res.Code != 0 {
		t.Fatalf("launch exit %d", res.Code)
	}
	for _, r := range []string{"R0", "R1"} {
		want := r + " seeded a|seeded b|seeded a|uploaded from the laptop|"
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("rank output lacks %q", want)
		}
	}
	// The job is reported SUCCEEDED only once the cached writes are in
	// the bucket: check right away.
	for _, r := range []string{"0", "1"} {
		got, err := getObject(t, "s3://sky-coord-e2e-cached/out-"+r+".txt")
		if err != nil || got != "from rank "+r+"\n" {
			t.Errorf("out-%s.txt in the bucket at SUCCEEDED: %q, %v", r, got, err)
		}
	}
	ls := cli.Run("storage", "ls")
	for _, want := range []string{"sky-coord-e2e-cached", "sky-coord-e2e-up", "seeded"} {
		if !strings.Contains(ls.Stdout, want) {
			t.Errorf("storage ls lacks %s", want)
		}
	}
	if res := cli.Run("down", "-y", "buckets"); res.Code != 0 {
		t.Fatalf("down exit %d", res.Code)
	}
	if bucketExists(t, "s3://sky-coord-e2e-cached") {
		t.Error("down kept the persistent: false bucket sky-coord created")
	}
	if !bucketExists(t, "s3://sky-coord-e2e-up") || !bucketExists(t, "s3://seeded") {
		t.Error("down deleted a persistent or external bucket")
	}
	data, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(data), "sky-coord") && strings.Contains(string(data), filepath.Join(cli.Home, "local")) {
		t.Errorf("a mount under the cluster's nodes is left:\n%s", data)
	}
	if res := cli.Run("storage", "delete", "sky-coord-e2e-up"); res.Code != 0 || bucketExists(t, "s3://sky-coord-e2e-up") {
		t.Errorf("storage delete: exit %d", res.Code)
	}
}
