package mounts

import (
	"context"
	"errors"
	"io"
	"iter"
	"net/http"
	"os"
	"strings"
	"sync"

	"cloud.google.com/go/storage"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
)

// GCSOptions tune a Google Cloud Storage store. The zero value is the
// default.
type GCSOptions struct {
	// ChunkSize is the part size of resumable uploads (default 16 MiB).
	ChunkSize int
	// ProjectID is the project new buckets are created in. Empty:
	// GOOGLE_CLOUD_PROJECT, CLOUDSDK_CORE_PROJECT, then the default
	// credentials' project.
	ProjectID string
}

// GCSStore is a Google Cloud Storage bucket. With STORAGE_EMULATOR_HOST
// set it talks, unauthenticated, to that emulator.
type GCSStore struct {
	bucket string
	opts   GCSOptions
	cl     *storage.Client
}

var _ Store = (*GCSStore)(nil)
var _ Copier = (*GCSStore)(nil)

// NewGCS opens a bucket with Application Default Credentials
// (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, the metadata server).
// It does no network I/O, but fails (ErrCredentials) when no credentials
// are found.
func NewGCS(ctx context.Context, bucket string, opts GCSOptions) (*GCSStore, error) {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = defaultPartSize
	}
	// JSON reads: one API for everything, which emulators serve too.
	g := &GCSStore{bucket: bucket, opts: opts}
	cl, err := storage.NewClient(ctx, storage.WithJSONReads())
	if err != nil {
		return nil, g.fail("open", "", err)
	}
	g.cl = cl
	return g, nil
}

// URL implements Store.
func (g *GCSStore) URL() string { return "gs://" + g.bucket }

func (g *GCSStore) fail(op, key string, err error) error {
	u := g.URL()
	if key != "" {
		u += "/" + key
	}
	var kind error
	var ge *googleapi.Error
	switch {
	case errors.Is(err, storage.ErrObjectNotExist):
		kind = ErrNotExist
	case errors.Is(err, storage.ErrBucketNotExist):
		kind = ErrBucketNotExist
	case errors.As(err, &ge) && (ge.Code == http.StatusForbidden || ge.Code == http.StatusUnauthorized):
		kind = ErrPermission
	case errors.As(err, &ge) && ge.Code == http.StatusNotFound:
		kind = ErrNotExist
	case errors.As(err, &ge) && ge.Code == http.StatusConflict:
		kind = ErrBucketExists
	case strings.Contains(err.Error(), "could not find default credentials"):
		kind = ErrCredentials
	}
	return &storeError{op: op, url: u, kind: kind, err: err}
}

// List implements Store.
func (g *GCSStore) List(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		q := &storage.Query{Prefix: prefix}
		if opts.Delimited {
			q.Delimiter = "/"
		}
		if err := q.SetAttrSelection([]string{"Name", "Size", "Updated", "Etag"}); err != nil {
			yield(Entry{}, g.fail("list", prefix, err))
			return
		}
		it := g.cl.Bucket(g.bucket).Objects(ctx, q)
		for {
			a, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return
			}
			if err != nil {
				yield(Entry{}, g.fail("list", prefix, err))
				return
			}
			e := Entry{Key: a.Name, Size: a.Size, ModTime: a.Updated, ETag: a.Etag}
			if a.Prefix != "" {
				e = Entry{Key: a.Prefix, IsPrefix: true}
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

// Stat implements Store.
func (g *GCSStore) Stat(ctx context.Context, key string) (Entry, error) {
	a, err := g.cl.Bucket(g.bucket).Object(key).Attrs(ctx)
	if err != nil {
		return Entry{}, g.fail("stat", key, err)
	}
	return Entry{Key: key, Size: a.Size, ModTime: a.Updated, ETag: a.Etag}, nil
}

// Read implements Store.
func (g *GCSStore) Read(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if length == 0 {
		return emptyReader{}, nil
	}
	r, err := g.cl.Bucket(g.bucket).Object(key).NewRangeReader(ctx, off, length)
	if err != nil {
		var ge *googleapi.Error
		if errors.As(err, &ge) && ge.Code == http.StatusRequestedRangeNotSatisfiable {
			return emptyReader{}, nil
		}
		return nil, g.fail("read", key, err)
	}
	return r, nil
}

// Write implements Store.
func (g *GCSStore) Write(ctx context.Context, key string, r io.Reader, size int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := g.cl.Bucket(g.bucket).Object(key).NewWriter(ctx)
	w.ChunkSize = g.opts.ChunkSize
	if size >= 0 && size < int64(g.opts.ChunkSize) {
		// One request; no resumable session for small objects.
		w.ChunkSize = 0
	}
	n, err := io.Copy(w, r)
	if err == nil && size >= 0 && n != size {
		err = errShort(n, size)
	}
	if err != nil {
		cancel() // abandons the upload: the object does not appear
		_ = w.Close()
		return &storeError{op: "write", url: g.URL() + "/" + key, err: err}
	}
	if err := w.Close(); err != nil {
		return g.fail("write", key, err)
	}
	return nil
}

// Delete implements Store.
func (g *GCSStore) Delete(ctx context.Context, key string) error {
	err := g.cl.Bucket(g.bucket).Object(key).Delete(ctx)
	if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return g.fail("delete", key, err)
	}
	return nil
}

// CopyObject implements Copier.
func (g *GCSStore) CopyObject(ctx context.Context, src, dst string) error {
	b := g.cl.Bucket(g.bucket)
	if _, err := b.Object(dst).CopierFrom(b.Object(src)).Run(ctx); err != nil {
		return g.fail("copy to "+dst+" from", src, err)
	}
	return nil
}

// projectID finds the project to create buckets in.
func (g *GCSStore) projectID(ctx context.Context) (string, error) {
	if g.opts.ProjectID != "" {
		return g.opts.ProjectID, nil
	}
	if p := firstEnv("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT"); p != "" {
		return p, nil
	}
	if os.Getenv("STORAGE_EMULATOR_HOST") != "" {
		return "emulator", nil
	}
	creds, err := google.FindDefaultCredentials(ctx, storage.ScopeFullControl)
	if err == nil && creds.ProjectID != "" {
		return creds.ProjectID, nil
	}
	return "", errors.New("no Google Cloud project to create the bucket in: set GOOGLE_CLOUD_PROJECT")
}

// CreateBucket implements Store.
func (g *GCSStore) CreateBucket(ctx context.Context) error {
	project, err := g.projectID(ctx)
	if err != nil {
		return &storeError{op: "create bucket", url: g.URL(), err: err}
	}
	if err := g.cl.Bucket(g.bucket).Create(ctx, project, nil); err != nil {
		return g.fail("create bucket", "", err)
	}
	return nil
}

// DeleteBucket implements Store.
func (g *GCSStore) DeleteBucket(ctx context.Context) error {
	if ok, err := g.BucketExists(ctx); err != nil {
		return err
	} else if !ok {
		return &storeError{op: "delete bucket", url: g.URL(), kind: ErrBucketNotExist}
	}
	if err := deleteAll(ctx, g); err != nil {
		return err
	}
	if err := g.cl.Bucket(g.bucket).Delete(ctx); err != nil {
		return g.fail("delete bucket", "", err)
	}
	return nil
}

// deleteAll deletes every object of a bucket, 16 at a time.
func deleteAll(ctx context.Context, st Store) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	keys := make(chan string)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range 16 {
		wg.Go(func() {
			for k := range keys {
				if err := st.Delete(ctx, k); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
	var listErr error
	for e, err := range st.List(ctx, "", ListOptions{}) {
		if err != nil {
			listErr = err
			break
		}
		select {
		case keys <- e.Key:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(keys)
	wg.Wait()
	if first != nil {
		return first
	}
	return listErr
}

// BucketExists implements Store.
func (g *GCSStore) BucketExists(ctx context.Context) (bool, error) {
	_, err := g.cl.Bucket(g.bucket).Attrs(ctx)
	if err == nil {
		return true, nil
	}
	err = g.fail("check bucket", "", err)
	if errors.Is(err, ErrBucketNotExist) || errors.Is(err, ErrNotExist) {
		return false, nil
	}
	return false, err
}

// Close implements Store.
func (g *GCSStore) Close() error { return g.cl.Close() }
