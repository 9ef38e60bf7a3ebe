package mounts

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"
)

// Location is a parsed bucket URL.
type Location struct {
	// Scheme is "s3", "gs", "r2" or "file".
	Scheme string
	// Bucket is the bucket's name; for file URLs the directory that plays
	// the bucket (an absolute path).
	Bucket string
	// Prefix is the key prefix inside the bucket, without a leading "/"
	// ("" for the whole bucket). It keeps a trailing "/" when given one.
	Prefix string
}

// String is the URL form of l.
func (l Location) String() string {
	if l.Scheme == "file" {
		return "file://" + path.Join(l.Bucket, l.Prefix)
	}
	if l.Prefix == "" {
		return l.Scheme + "://" + l.Bucket
	}
	return l.Scheme + "://" + l.Bucket + "/" + l.Prefix
}

// ParseURL splits a bucket URL: s3://bucket/prefix, gs://bucket/prefix,
// r2://bucket/prefix (Cloudflare R2, spoken to as S3) or file:///dir (a
// local directory standing in for a bucket: the whole path is the bucket).
func ParseURL(raw string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("bucket URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "s3", "gs", "r2":
		if u.Host == "" {
			return Location{}, fmt.Errorf("bucket URL %q names no bucket: write %s://BUCKET[/PREFIX]", raw, u.Scheme)
		}
		if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" {
			return Location{}, fmt.Errorf("bucket URL %q: only %s://BUCKET[/PREFIX] is understood", raw, u.Scheme)
		}
		return Location{Scheme: u.Scheme, Bucket: u.Host, Prefix: strings.TrimPrefix(u.Path, "/")}, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("bucket URL %q: a file URL needs an absolute path, as file:///dir", raw)
		}
		if u.Path == "" || !filepath.IsAbs(u.Path) {
			return Location{}, fmt.Errorf("bucket URL %q: a file URL needs an absolute path, as file:///dir", raw)
		}
		return Location{Scheme: "file", Bucket: filepath.Clean(u.Path)}, nil
	case "":
		return Location{}, fmt.Errorf("bucket URL %q has no scheme: use s3://, gs://, r2:// or file://", raw)
	default:
		return Location{}, fmt.Errorf("bucket URL %q: scheme %q is not supported (use s3://, gs://, r2:// or file://)", raw, u.Scheme)
	}
}

// Open parses a bucket URL and opens its store with default options. The
// store is bound to the bucket; the returned Location carries the prefix.
// Credentials come from each client's standard chain (see the package
// documentation); Open does no network I/O. A gs:// store without
// credentials fails here (ErrCredentials); s3:// and r2:// ones at their
// first request.
func Open(ctx context.Context, rawURL string) (Store, Location, error) {
	loc, err := ParseURL(rawURL)
	if err != nil {
		return nil, Location{}, err
	}
	st, err := OpenLocation(ctx, loc)
	return st, loc, err
}

// OpenLocation opens the store of a parsed Location with default options.
func OpenLocation(ctx context.Context, loc Location) (Store, error) {
	switch loc.Scheme {
	case "s3":
		return NewS3(ctx, loc.Bucket, S3Options{})
	case "r2":
		return NewS3(ctx, loc.Bucket, S3Options{R2: true})
	case "gs":
		return NewGCS(ctx, loc.Bucket, GCSOptions{})
	case "file":
		return NewLocal(loc.Bucket), nil
	}
	return nil, fmt.Errorf("open %s: scheme %q is not supported", loc, loc.Scheme)
}
