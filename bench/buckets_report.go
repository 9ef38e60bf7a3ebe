package main

import (
	"fmt"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"
)

// The buckets section's text and table.

type reportInput struct {
	rcloneVersion      string
	rcloneOK           bool
	onTmpfs            bool
	scratch            string
	seeded             time.Duration
	oursCopy, rcCopy   side
	oursMount, rcMount side
}

func (b *bucketsBench) report(in reportInput) string {
	var out strings.Builder
	where := "a temporary directory on " + filepath.Dir(in.scratch) + " (no tmpfs with room)"
	if in.onTmpfs {
		where = "tmpfs (" + filepath.Dir(in.scratch) + ")"
	}
	ref := in.rcloneVersion
	if len(b.rcloneFlags) > 0 {
		ref += ", every command with the extra flags `" + strings.Join(b.rcloneFlags, " ") + "`"
	}
	if !in.rcloneOK {
		ref = "rclone " + in.rcloneVersion
	}
	fmt.Fprintf(&out, "- **Fixture**: a loopback S3 endpoint, %s with its objects in memory, in this process on 127.0.0.1 (seeded in %s): "+
		"under `copy/` %d × %d MiB + %s × %d KiB (%s MiB in %s objects), under `mount/` one object of %s MiB.\n",
		gofakes3Version(), secs(in.seeded), bigCount, bigSize>>20, thousands(smallCount), smallSize>>10,
		thousands(copyBytes>>20), thousands(copyObjects), thousands(mountSize>>20))
	fmt.Fprintf(&out, "- **sky-coord**: COPY is `mounts.Mount` in COPY mode (`mounts.Copy` with its defaults) of `s3://%s/copy` into %s. "+
		"MOUNT is `mounts.Mount` in MOUNT mode (go-fuse, default read-ahead) of `s3://%s/mount` at a fresh directory, then one sequential read of the 1 GiB file "+
		"with 1 MiB `read(2)` calls. It finds the endpoint in `AWS_ENDPOINT_URL_S3`, with `AWS_CA_BUNDLE` left as the machine sets it.\n",
		bucket, where, bucket)
	fmt.Fprintf(&out, "- **Reference**, same run: %s, its remote defined only by `RCLONE_CONFIG_%s_*` variables (provider Other, path-style) and run without `AWS_CA_BUNDLE` "+
		"(rclone 1.60 fails with it set). COPY: `rclone copy %s:%s/copy DIR` with rclone's defaults: 4 transfers, 4 streams for files over 250 MiB, and an MD5 of every file "+
		"checked against its ETag (sky-coord checks sizes only; `go run ./bench -only buckets -rclone-flags \"--ignore-checksum --transfers 16\"` compares with a tuned rclone). "+
		"MOUNT: `rclone mount %s:%s/mount DIR --vfs-cache-mode off` in the background, waited for in /proc/self/mountinfo, the same read, then `fusermount3 -u`.\n",
		ref, strings.ToUpper(rcloneName), rcloneName, bucket, rcloneName, bucket)
	fmt.Fprintf(&out, "- **Method**: %d trials, each running both tools, the order alternating (sky-coord first in trials 1, 3, …). Every mount is fresh, so every read is cold; "+
		"each copy is checked (file count and bytes) and removed. The endpoint, sky-coord and rclone share the machine's cores.\n", b.trials)
	fmt.Fprintf(&out, "- **Goal**: at least rclone's speed for each case: ratio = rclone's time / sky-coord's ≥ 1.0.\n")
	fmt.Fprintf(&out, "- **Machine**: %s.\n\n", machine())

	fmt.Fprintf(&out, "| case (median of %d) | sky-coord | rclone | ratio (rclone time / ours) | goal |\n|---|---|---|---|---|\n", b.trials)
	row := func(name string, bytes int64, ours, rc side, goal string) {
		oursCell := cell(ours, bytes)
		rcCell := cell(rc, bytes)
		ratio := "–"
		if len(ours.took) > 0 && len(rc.took) > 0 {
			ratio = fmt.Sprintf("%.2f×", float64(median(rc.took))/float64(median(ours.took)))
		}
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s |\n", name, oursCell, rcCell, ratio, goal)
	}
	row(fmt.Sprintf("COPY of %s MiB: %d × %d MiB + %s × %d KiB", thousands(copyBytes>>20), bigCount, bigSize>>20, thousands(smallCount), smallSize>>10),
		copyBytes, in.oursCopy, in.rcCopy, "≥ 1.0×")
	row("MOUNT: sequential read of a 1 GiB object", mountSize, in.oursMount, in.rcMount, "≥ 1.0×")
	if len(in.oursMount.setup) > 0 || len(in.rcMount.setup) > 0 {
		fmt.Fprintf(&out, "| MOUNT: mount until ready (not in the goal) | %s | %s | | |\n",
			setupCell(in.oursMount), setupCell(in.rcMount))
	}
	out.WriteString("\n")
	fmt.Fprintf(&out, "Each trial in order — COPY: sky-coord %s; rclone %s. MOUNT read: sky-coord %s; rclone %s.\n\n",
		trialList(in.oursCopy), trialList(in.rcCopy), trialList(in.oursMount), trialList(in.rcMount))
	return out.String()
}

func cell(s side, bytes int64) string {
	switch {
	case s.failed != nil:
		return "failed: " + oneLine(s.failed.Error())
	case len(s.took) == 0 && s.note != "":
		return "not measured: " + s.note
	case len(s.took) == 0:
		return "–"
	}
	m := median(s.took)
	return fmt.Sprintf("%s (%s)", secs(m), mbps(bytes, m))
}

func setupCell(s side) string {
	if len(s.setup) == 0 {
		return "–"
	}
	return ms(median(s.setup))
}

func trialList(s side) string {
	if len(s.took) == 0 {
		return "–"
	}
	return list(s.took, secs)
}

func gofakes3Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/johannesboyne/gofakes3" {
				return "gofakes3 " + d.Version
			}
		}
	}
	return "gofakes3"
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	if len(s) <= 3 {
		return s
	}
	return thousands(n/1000) + "," + s[len(s)-3:]
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
