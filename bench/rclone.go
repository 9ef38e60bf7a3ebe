package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sky-coord/sky-coord/mounts"
	"github.com/sky-coord/sky-coord/testenv/objstore"
)

// rclone runs the reference tool against the bench endpoint. Its remote
// is defined by environment variables only, and it runs without
// AWS_CA_BUNDLE: Debian's rclone 1.60 fails every S3 call while it is
// set.
type rclone struct {
	bin   string
	env   []string
	extra []string // more flags for every command (-rclone-flags)
}

// newRclone finds rclone; when it is missing it returns nil and says so.
func newRclone(endpoint, scratch string, extra []string) (*rclone, string) {
	bin, err := exec.LookPath("rclone")
	if err != nil {
		return nil, "not installed (`apt-get install -y rclone fuse3`; `make test-deps` does it as root)"
	}
	v, err := exec.Command(bin, "version").Output()
	if err != nil {
		return nil, fmt.Sprintf("`rclone version` failed: %v", err)
	}
	version := strings.TrimSpace(strings.SplitN(string(v), "\n", 2)[0])
	conf := filepath.Join(scratch, "rclone.conf") // empty: nothing from ~/.config
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		return nil, err.Error()
	}
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "AWS_") || strings.HasPrefix(kv, "RCLONE_") {
			continue
		}
		env = append(env, kv)
	}
	p := "RCLONE_CONFIG_" + strings.ToUpper(rcloneName) + "_"
	env = append(env, "RCLONE_CONFIG="+conf,
		p+"TYPE=s3", p+"PROVIDER=Other", p+"ENDPOINT="+endpoint,
		p+"ACCESS_KEY_ID="+objstore.AccessKeyID, p+"SECRET_ACCESS_KEY="+objstore.SecretAccessKey,
		p+"REGION="+objstore.Region, p+"FORCE_PATH_STYLE=true")
	return &rclone{bin: bin, env: env, extra: extra}, version
}

func (r *rclone) command(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer) {
	c := exec.CommandContext(ctx, r.bin, append(args, r.extra...)...)
	c.Env = r.env
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	return c, &out
}

// copy runs `rclone copy` of copy/ into dst, checks the result and
// removes it.
func (r *rclone) copy(ctx context.Context, dst string) (time.Duration, error) {
	defer os.RemoveAll(dst)
	c, out := r.command(ctx, "copy", rcloneName+":"+bucket+"/copy", dst)
	start := time.Now()
	p, err := startTracked(c)
	if err != nil {
		return 0, fmt.Errorf("rclone copy: %w", err)
	}
	err = p.wait()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("rclone copy: %w: %s", err, tail(out.String()))
	}
	return took, checkTree(dst)
}

// mount runs `rclone mount` of mount/ at dir in the background, waits for
// the mount, reads the object once, unmounts and waits for rclone to end.
func (r *rclone) mount(ctx context.Context, dir string) (setup, read time.Duration, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	defer os.Remove(dir)
	c, out := r.command(ctx, "mount", rcloneName+":"+bucket+"/mount", dir, "--vfs-cache-mode", "off")
	start := time.Now()
	p, err := startTracked(c)
	if err != nil {
		return 0, 0, fmt.Errorf("rclone mount: %w", err)
	}
	// Runs before p's own cleanup (newest first): unmount, then give
	// rclone time to end by itself.
	stop := atCleanup(func() { stopRcloneMount(p, dir) })
	defer stop()

	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := mounts.IsMounted(dir)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			break
		}
		select {
		case <-p.exited():
			return 0, 0, fmt.Errorf("rclone mount exited before mounting: %v: %s", p.wait(), tail(out.String()))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("rclone mount: %s not mounted after 30 s: %s", dir, tail(out.String()))
		}
	}
	setup = time.Since(start)
	read, err = readFile(filepath.Join(dir, filepath.Base(mountKey)), mountSize)
	if err != nil {
		return setup, read, fmt.Errorf("rclone mount: %w", err)
	}
	if uerr := unmountFUSE(dir); uerr != nil {
		return setup, read, fmt.Errorf("rclone mount: %w", uerr)
	}
	return setup, read, nil
}

// stopRcloneMount makes sure the rclone mount process is gone and its
// mount detached.
func stopRcloneMount(p *tracked, dir string) {
	if ok, _ := mounts.IsMounted(dir); ok {
		_ = unmountFUSE(dir)
	}
	select {
	case <-p.exited():
	case <-time.After(10 * time.Second):
	}
	p.stop()
	if ok, _ := mounts.IsMounted(dir); ok {
		_ = exec.Command("umount", "-l", dir).Run()
	}
}

// unmountFUSE unmounts a FUSE file system, with fusermount3 when present.
func unmountFUSE(dir string) error {
	var c *exec.Cmd
	if p, err := exec.LookPath("fusermount3"); err == nil {
		c = exec.Command(p, "-u", dir)
	} else {
		c = exec.Command("umount", dir)
	}
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("unmount %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// tail is the end of a tool's output, for an error.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}
