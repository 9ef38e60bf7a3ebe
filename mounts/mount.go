package mounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Mode is how a bucket appears on a node (SkyPilot's storage modes).
type Mode string

// The modes.
const (
	// ModeCopy downloads the objects before the job runs; writes stay local.
	ModeCopy Mode = "COPY"
	// ModeMount is a FUSE file system streaming reads from the bucket; a
	// new or rewritten file goes up whole when closed.
	ModeMount Mode = "MOUNT"
	// ModeMountCached serves reads and writes from a local disk cache and
	// uploads written files in the background.
	ModeMountCached Mode = "MOUNT_CACHED"
)

// ParseMode reads a mode as a task file writes it, in any case.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToUpper(strings.TrimSpace(s))); m {
	case ModeCopy, ModeMount, ModeMountCached:
		return m, nil
	case "":
		return ModeMount, nil
	}
	return "", fmt.Errorf("storage mode %q: use MOUNT, COPY or MOUNT_CACHED", s)
}

// MountSpec says what to mount where.
type MountSpec struct {
	// Dst is the local path: a directory, created when missing. A stale
	// FUSE mount left there by a process that died is detached first.
	Dst string
	// URL is the bucket and prefix: s3://b/p, gs://b/p, r2://b/p, file:///dir.
	URL string
	// Mode defaults to MOUNT.
	Mode Mode
	// Store, when set, is used instead of opening URL (URL still supplies
	// the prefix). Tests use it to wrap a store.
	Store Store
	// ReadOnly refuses writes with EROFS (MOUNT and MOUNT_CACHED).
	ReadOnly bool

	// CacheDir holds MOUNT_CACHED's cached files and its journal of pending
	// uploads (required for MOUNT_CACHED; keep it on a disk that survives
	// the process). MOUNT stages files being written there (default: the
	// system temporary directory).
	CacheDir string
	// CacheBytes caps the cache (default 10 GiB). Clean files are evicted,
	// least recently used first; files not yet uploaded never are.
	CacheBytes int64
	// WriteBack is how long MOUNT_CACHED waits after a file is closed
	// before uploading it (default 1s; Flush skips the wait).
	WriteBack time.Duration
	// Transfers is MOUNT_CACHED's number of parallel uploads (default 4).
	Transfers int

	// ChunkSize is the size of each ranged read (default 8 MiB) and
	// ReadAhead how many of them a sequential reader keeps in flight
	// (default 8).
	ChunkSize int64
	ReadAhead int
	// MetadataTTL is how long sizes and directory listings are trusted
	// before the bucket is asked again (default 1s).
	MetadataTTL time.Duration
	// AllowOther lets users other than the mounting one use the mount. It
	// is always on when the process runs as root; others need
	// user_allow_other in /etc/fuse.conf.
	AllowOther bool

	// Copy tunes COPY mode.
	Copy CopyOptions
	// Logger receives the mount's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// UploadProgress is what MOUNT_CACHED still has to upload.
type UploadProgress struct {
	// Files and Bytes not yet in the bucket, including Open ones.
	Files int
	Bytes int64
	// Open counts files still open for writing: they go up once closed.
	Open int
	// LastError is the latest failed upload's error, "" when none.
	LastError string
}

// ErrFUSEUnsupported: MOUNT and MOUNT_CACHED need Linux.
var ErrFUSEUnsupported = errors.New("FUSE mounts need Linux")

func (s *MountSpec) defaults() error {
	if s.Dst == "" {
		return errors.New("mount: no destination path")
	}
	if s.Mode == "" {
		s.Mode = ModeMount
	}
	if _, err := ParseMode(string(s.Mode)); err != nil {
		return err
	}
	if s.CacheBytes <= 0 {
		s.CacheBytes = 10 << 30
	}
	if s.WriteBack <= 0 {
		s.WriteBack = time.Second
	}
	if s.Transfers <= 0 {
		s.Transfers = 4
	}
	if s.ChunkSize <= 0 {
		s.ChunkSize = 8 << 20
	}
	if s.ReadAhead <= 0 {
		s.ReadAhead = 8
	}
	if s.MetadataTTL <= 0 {
		s.MetadataTTL = time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Mode == ModeMountCached && s.CacheDir == "" {
		return fmt.Errorf("mount %s at %s: MOUNT_CACHED needs a cache directory", s.URL, s.Dst)
	}
	return nil
}

// Mounted is a bucket in place at a path.
type Mounted struct {
	spec  MountSpec
	loc   Location
	st    Store
	owned bool // st was opened here and is closed by Unmount
	cache *cache
	fuse  fuseServer // nil for COPY
}

// fuseServer is the running file system (see fuse_linux.go).
type fuseServer interface {
	unmount() error
}

// Dst is the mount's path.
func (m *Mounted) Dst() string { return m.spec.Dst }

// Flush blocks until every file written under a MOUNT_CACHED mount is in
// the bucket, calling progress (when not nil) about once a second and
// when the count changes. Uploads still waiting out WriteBack start at
// once. It returns nil at once for the other modes. When ctx ends first
// it returns an error saying what is still pending; the files stay
// journaled in CacheDir, and a later Mount or ResumeUploads of the same
// CacheDir uploads them.
func (m *Mounted) Flush(ctx context.Context, progress func(UploadProgress)) error {
	if m.cache == nil {
		return nil
	}
	return m.cache.flush(ctx, progress)
}

// Pending is what a MOUNT_CACHED mount still has to upload.
func (m *Mounted) Pending() UploadProgress {
	if m.cache == nil {
		return UploadProgress{}
	}
	return m.cache.pending()
}

// Unmount uploads what MOUNT_CACHED still holds (bounded by ctx), then
// unmounts and releases the store. A mount kept busy by open files is
// detached lazily. It is safe to call twice. An error says what was not
// uploaded; those files stay journaled for the next Mount or
// ResumeUploads of the same CacheDir. COPY's files are left in place.
func (m *Mounted) Unmount(ctx context.Context) error {
	var errs []error
	if m.cache != nil {
		if err := m.cache.flush(ctx, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if m.fuse != nil {
		if err := m.fuse.unmount(); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m.spec.Dst, err))
		}
		m.fuse = nil
	}
	if m.cache != nil {
		if err := m.cache.close(); err != nil {
			errs = append(errs, err)
		}
		m.cache = nil
	}
	if m.owned && m.st != nil {
		if err := m.st.Close(); err != nil {
			errs = append(errs, err)
		}
		m.st = nil
	}
	return errors.Join(errs...)
}

// Mount puts a bucket at spec.Dst in spec.Mode: COPY downloads it (and
// returns when done), MOUNT and MOUNT_CACHED mount a FUSE file system
// served by this process until Unmount. MOUNT_CACHED first resumes the
// uploads its CacheDir's journal still holds.
func Mount(ctx context.Context, spec MountSpec) (*Mounted, error) {
	if err := spec.defaults(); err != nil {
		return nil, err
	}
	loc, err := ParseURL(spec.URL)
	if err != nil {
		return nil, err
	}
	m := &Mounted{spec: spec, loc: loc, st: spec.Store}
	if m.st == nil {
		if m.st, err = OpenLocation(ctx, loc); err != nil {
			return nil, err
		}
		m.owned = true
	}
	fail := func(err error) (*Mounted, error) {
		// Nothing to wait for: what the cache journaled stays for next time.
		done, cancel := context.WithCancel(context.Background())
		cancel()
		_ = m.Unmount(done)
		return nil, err
	}
	if spec.Mode == ModeCopy {
		if _, err := Copy(ctx, m.st, loc.Prefix, spec.Dst, spec.Copy); err != nil {
			return fail(err)
		}
		return m, nil
	}
	prefix := loc.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		if _, err := m.st.Stat(ctx, prefix); err == nil && !hasAny(ctx, m.st, prefix+"/") {
			return fail(fmt.Errorf("mount %s at %s: %s mounts a bucket or a prefix, and this names one object: use mode COPY for it", loc, spec.Dst, spec.Mode))
		}
		prefix += "/"
	}
	if spec.Mode == ModeMountCached {
		c, err := openCache(m.st, spec, prefix)
		if err != nil {
			return fail(err)
		}
		m.cache = c
	}
	if m.fuse, err = mountFUSE(ctx, m.st, spec, loc, prefix, m.cache); err != nil {
		return fail(err)
	}
	return m, nil
}

// ResumeUploads uploads what a MOUNT_CACHED cache directory still holds
// from a process that stopped before uploading it, without mounting, and
// returns when all is in the bucket (or ctx ends). spec needs URL (or
// Store) and CacheDir.
func ResumeUploads(ctx context.Context, spec MountSpec, progress func(UploadProgress)) error {
	spec.Mode = ModeMountCached
	if spec.Dst == "" {
		spec.Dst = "(not mounted)"
	}
	if err := spec.defaults(); err != nil {
		return err
	}
	loc, err := ParseURL(spec.URL)
	if err != nil {
		return err
	}
	st := spec.Store
	if st == nil {
		if st, err = OpenLocation(ctx, loc); err != nil {
			return err
		}
		defer st.Close()
	}
	prefix := loc.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	c, err := openCache(st, spec, prefix)
	if err != nil {
		return err
	}
	err = c.flush(ctx, progress)
	return errors.Join(err, c.close())
}
