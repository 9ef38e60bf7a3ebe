package mounts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"
)

// Store is one bucket of an object store. Keys are the objects' full names
// in the bucket ("data/train/part-0001"); a key that ends in "/" names a
// directory marker. A Store is safe for concurrent use.
type Store interface {
	// URL names the bucket, as "s3://bucket", for messages.
	URL() string

	// List yields the objects whose keys start with prefix, in no promised
	// order. With opts.Delimited it lists one level: keys under prefix up to
	// the next "/", deeper keys folded into one prefix entry each. An error
	// ends the sequence.
	List(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[Entry, error]

	// Stat returns one object's size and version; ErrNotExist when missing.
	Stat(ctx context.Context, key string) (Entry, error)

	// Read streams length bytes of an object from offset off (length < 0:
	// to its end). A range past the end is cut at the end; one that starts
	// at or past it reads nothing.
	Read(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)

	// Write stores r as the object key, replacing any object there. size is
	// r's length, or -1 when unknown; large objects go up in parts (S3
	// multipart, GCS resumable) without being held in memory whole. The
	// object appears only when the whole of r is stored, and never when
	// Write fails or ctx is cancelled.
	Write(ctx context.Context, key string, r io.Reader, size int64) error

	// Delete removes an object; a missing one is not an error.
	Delete(ctx context.Context, key string) error

	// CreateBucket creates the bucket; ErrBucketExists when it exists.
	CreateBucket(ctx context.Context) error

	// DeleteBucket deletes every object in the bucket, then the bucket;
	// ErrBucketNotExist when there is none.
	DeleteBucket(ctx context.Context) error

	// BucketExists reports whether the bucket exists. A bucket that exists
	// but that these credentials may not read is an ErrPermission error.
	BucketExists(ctx context.Context) (bool, error)

	// Close releases the client's connections.
	Close() error
}

// Copier is a Store that copies an object to another key of its bucket
// without the data passing through this process.
type Copier interface {
	CopyObject(ctx context.Context, src, dst string) error
}

// Entry is one object, or in a delimited listing one common prefix.
type Entry struct {
	// Key is the object's full key; a prefix entry's ends in "/".
	Key string
	// Size in bytes; 0 for prefixes.
	Size int64
	// ModTime is when the object was last written; zero for prefixes.
	ModTime time.Time
	// ETag changes whenever the object's content does ("" when unknown).
	ETag string
	// IsPrefix marks a common prefix (a directory) of a delimited listing.
	IsPrefix bool
}

// ListOptions shape a listing.
type ListOptions struct {
	// Delimited lists one level, as `ls` does, instead of every key.
	Delimited bool
}

// Errors every Store returns, wrapped, for these conditions. Match them
// with errors.Is.
var (
	// ErrNotExist: the object does not exist.
	ErrNotExist = errors.New("object does not exist")
	// ErrBucketNotExist: the bucket does not exist.
	ErrBucketNotExist = errors.New("bucket does not exist")
	// ErrBucketExists: CreateBucket found the bucket already there.
	ErrBucketExists = errors.New("bucket already exists")
	// ErrPermission: the credentials are refused for this bucket or object.
	ErrPermission = errors.New("access denied")
	// ErrCredentials: no credentials were found for the store.
	ErrCredentials = errors.New("no credentials found")
)

// storeError is what a Store returns: the operation, the object it was
// done to, one of the sentinels above (or nil) and the client's error.
type storeError struct {
	op   string // "read", "stat", ...
	url  string // s3://bucket/key
	kind error  // a sentinel, or nil
	err  error
}

func (e *storeError) Error() string {
	msg := e.op + " " + e.url + ": "
	switch {
	case e.kind == nil:
		return msg + e.err.Error()
	case e.err == nil || e.err == e.kind:
		return msg + e.kind.Error() + hint(e.kind, e.url)
	default:
		return msg + e.kind.Error() + hint(e.kind, e.url) + " (" + e.err.Error() + ")"
	}
}

func (e *storeError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// hint tells the user what to do next for the conditions they can fix.
func hint(kind error, url string) string {
	scheme, _, _ := strings.Cut(url, "://")
	switch {
	case kind == ErrCredentials && (scheme == "s3" || scheme == "r2"):
		return ": set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials"
	case kind == ErrCredentials && scheme == "gs":
		return ": run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
	case kind == ErrPermission:
		return ": check that these credentials may use the bucket"
	}
	return ""
}

// emptyReader is what Read returns for a range that holds no bytes.
type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyReader) Close() error             { return nil }

// errShort reports a stream that ended before its promised size.
func errShort(got, want int64) error {
	return &shortError{got: got, want: want}
}

type shortError struct{ got, want int64 }

func (e *shortError) Error() string {
	return fmt.Sprintf("size mismatch: got %d bytes, want %d", e.got, e.want)
}

// sizedBody returns r as an upload body that fails, before the upload
// completes, when r's length is not size. Readers that can seek are
// checked up front and passed on as they are, so uploads read their parts
// in parallel without copying.
func sizedBody(r io.Reader, size int64) (io.Reader, error) {
	if size < 0 {
		return r, nil
	}
	if rs, ok := r.(interface {
		io.ReaderAt
		io.Seeker
	}); ok {
		cur, err := rs.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		end, err := rs.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, err
		}
		if _, err := rs.Seek(cur, io.SeekStart); err != nil {
			return nil, err
		}
		if end-cur != size {
			return nil, errShort(end-cur, size)
		}
		return r, nil
	}
	return &exactReader{r: r, want: size}, nil
}

// exactReader fails at the end of a stream whose length is not want.
type exactReader struct {
	r    io.Reader
	n    int64
	want int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if e.n > e.want {
		return n, errShort(e.n, e.want)
	}
	if err == io.EOF && e.n != e.want {
		return n, errShort(e.n, e.want)
	}
	return n, err
}

// streamCopy copies an object through this process.
func streamCopy(ctx context.Context, st Store, src, dst string, size int64) error {
	rc, err := st.Read(ctx, src, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	return st.Write(ctx, dst, rc, size)
}
