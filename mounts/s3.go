package mounts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Options tune an S3 (or S3-compatible) store. The zero value is the
// default.
type S3Options struct {
	// Endpoint is the S3 endpoint URL. Empty: AWS_ENDPOINT_URL_S3, else
	// AWS_ENDPOINT_URL, else AWS itself (or R2's, with R2).
	Endpoint string
	// Region overrides the configured region (AWS_REGION, ~/.aws/config);
	// us-east-1 when none is configured.
	Region string
	// ForcePathStyle addresses buckets as ENDPOINT/BUCKET. Without it path
	// style is used when the endpoint's host is an IP address or localhost.
	ForcePathStyle bool
	// R2 speaks to Cloudflare R2: endpoint https://ACCOUNT.r2.cloudflarestorage.com
	// with ACCOUNT from R2_ACCOUNT_ID, CLOUDFLARE_ACCOUNT_ID or
	// ~/.cloudflare/accountid, credentials from profile "r2" of
	// ~/.cloudflare/r2.credentials when that file exists.
	R2 bool
	// PartSize is the multipart part size (default 16 MiB, at least 5 MiB).
	PartSize int64
	// UploadConcurrency is the parts of one upload in flight (default 4).
	UploadConcurrency int
	// MaxConnsPerHost caps idle connections kept per host (default 64), so
	// parallel ranged reads reuse connections.
	MaxConnsPerHost int
}

const (
	defaultPartSize = 16 << 20
	minS3PartSize   = 5 << 20
	maxS3CopySize   = 5 << 30 // CopyObject's limit; larger objects are streamed
)

// S3Store is a bucket of S3 or of an S3-compatible store (R2, MinIO,
// gofakes3).
type S3Store struct {
	bucket   string
	scheme   string // "s3" or "r2", for messages
	endpoint string // "" for AWS itself
	opts     S3Options

	mu          sync.Mutex
	cl          *s3.Client
	regionFixed bool // the bucket's region was looked up (AWS only)
}

var _ Store = (*S3Store)(nil)
var _ Copier = (*S3Store)(nil)

// NewS3 opens a bucket through the AWS SDK's standard configuration chain
// (environment, ~/.aws/config and credentials, SSO, IMDS). It does no
// network I/O.
func NewS3(ctx context.Context, bucket string, opts S3Options) (*S3Store, error) {
	if opts.PartSize == 0 {
		opts.PartSize = defaultPartSize
	}
	if opts.PartSize < minS3PartSize {
		opts.PartSize = minS3PartSize
	}
	if opts.UploadConcurrency <= 0 {
		opts.UploadConcurrency = 4
	}
	if opts.MaxConnsPerHost <= 0 {
		opts.MaxConnsPerHost = 64
	}
	s := &S3Store{bucket: bucket, scheme: "s3", opts: opts}
	// The SDK must build the HTTP client itself (a BuildableClient) so that
	// it can add AWS_CA_BUNDLE to its transport; a plain *http.Client makes
	// LoadDefaultConfig fail when that variable is set.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = opts.MaxConnsPerHost
	})
	load := []func(*config.LoadOptions) error{config.WithHTTPClient(httpClient)}
	s.endpoint = opts.Endpoint
	region := opts.Region
	if opts.R2 {
		s.scheme = "r2"
		if s.endpoint == "" {
			account, err := r2AccountID()
			if err != nil {
				return nil, fmt.Errorf("open r2://%s: %w", bucket, err)
			}
			s.endpoint = "https://" + account + ".r2.cloudflarestorage.com"
		}
		if region == "" {
			region = "auto"
		}
		if home, err := os.UserHomeDir(); err == nil {
			creds := filepath.Join(home, ".cloudflare", "r2.credentials")
			if _, err := os.Stat(creds); err == nil {
				load = append(load, config.WithSharedCredentialsFiles([]string{creds}), config.WithSharedConfigProfile("r2"))
			}
		}
	} else if s.endpoint == "" {
		s.endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	if region != "" {
		load = append(load, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("open %s://%s: load AWS configuration: %w", s.scheme, bucket, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	custom := s.endpoint != ""
	pathStyle := opts.ForcePathStyle || (custom && isLocalEndpoint(s.endpoint))
	_, userChecksum := os.LookupEnv("AWS_REQUEST_CHECKSUM_CALCULATION")
	s.cl = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if custom {
			o.BaseEndpoint = aws.String(s.endpoint)
			// S3-compatible stores vary in their support of the checksums
			// the SDK adds by default; send them only where S3 requires.
			if !userChecksum {
				o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
				o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			}
		}
		o.UsePathStyle = pathStyle
	})
	s.regionFixed = custom || opts.Region != ""
	return s, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// isLocalEndpoint reports an endpoint on an IP address or localhost, which
// cannot take the bucket as a subdomain.
func isLocalEndpoint(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	host := u.Hostname()
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || net.ParseIP(host) != nil
}

func r2AccountID() (string, error) {
	if id := firstEnv("R2_ACCOUNT_ID", "CLOUDFLARE_ACCOUNT_ID"); id != "" {
		return id, nil
	}
	home, err := os.UserHomeDir()
	if err == nil {
		b, err := os.ReadFile(filepath.Join(home, ".cloudflare", "accountid"))
		if err == nil && strings.TrimSpace(string(b)) != "" {
			return strings.TrimSpace(string(b)), nil
		}
	}
	return "", errors.New("no Cloudflare account ID: set R2_ACCOUNT_ID or write it to ~/.cloudflare/accountid")
}

// client returns the S3 client, first moving it to the bucket's own region
// when talking to AWS itself (a bucket answers only in its region).
func (s *S3Store) client(ctx context.Context) *s3.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.regionFixed {
		return s.cl
	}
	region, err := manager.GetBucketRegion(ctx, s.cl, s.bucket)
	if err != nil {
		// A missing bucket has no region; keep the configured one, and
		// look again next time.
		return s.cl
	}
	s.regionFixed = true
	if region != s.cl.Options().Region {
		s.cl = s3.New(s.cl.Options(), func(o *s3.Options) { o.Region = region })
	}
	return s.cl
}

// URL implements Store.
func (s *S3Store) URL() string { return s.scheme + "://" + s.bucket }

// Endpoint is the endpoint URL in use ("" for AWS itself).
func (s *S3Store) Endpoint() string { return s.endpoint }

func (s *S3Store) fail(op, key string, err error) error {
	u := s.URL()
	if key != "" {
		u += "/" + key
	}
	var kind error
	var ae smithy.APIError
	var re *awshttp.ResponseError
	switch {
	case errors.As(err, &ae) && s3Kinds[ae.ErrorCode()] != nil:
		kind = s3Kinds[ae.ErrorCode()]
	case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound:
		kind = ErrNotExist
	case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden:
		kind = ErrPermission
	case strings.Contains(err.Error(), "get identity:"):
		// The SDK wraps credential-chain failures this way only.
		kind = ErrCredentials
	}
	return &storeError{op: op, url: u, kind: kind, err: err}
}

var s3Kinds = map[string]error{
	"NoSuchKey":               ErrNotExist,
	"NotFound":                ErrNotExist,
	"NoSuchBucket":            ErrBucketNotExist,
	"BucketAlreadyExists":     ErrBucketExists,
	"BucketAlreadyOwnedByYou": ErrBucketExists,
	"AccessDenied":            ErrPermission,
	"Forbidden":               ErrPermission,
	"InvalidAccessKeyId":      ErrPermission,
	"SignatureDoesNotMatch":   ErrPermission,
	"AllAccessDisabled":       ErrPermission,
}

// List implements Store.
func (s *S3Store) List(ctx context.Context, prefix string, opts ListOptions) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)}
		if opts.Delimited {
			in.Delimiter = aws.String("/")
		}
		pages := s3.NewListObjectsV2Paginator(s.client(ctx), in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(Entry{}, s.fail("list", prefix, err))
				return
			}
			for _, o := range page.Contents {
				e := Entry{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag)}
				if o.LastModified != nil {
					e.ModTime = *o.LastModified
				}
				if !yield(e, nil) {
					return
				}
			}
			for _, p := range page.CommonPrefixes {
				if !yield(Entry{Key: aws.ToString(p.Prefix), IsPrefix: true}, nil) {
					return
				}
			}
		}
	}
}

// Stat implements Store.
func (s *S3Store) Stat(ctx context.Context, key string) (Entry, error) {
	out, err := s.client(ctx).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return Entry{}, s.fail("stat", key, err)
	}
	e := Entry{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag)}
	if out.LastModified != nil {
		e.ModTime = *out.LastModified
	}
	return e, nil
}

// Read implements Store.
func (s *S3Store) Read(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if length == 0 {
		return emptyReader{}, nil
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	case off > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	out, err := s.client(ctx).GetObject(ctx, in)
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
			return emptyReader{}, nil
		}
		return nil, s.fail("read", key, err)
	}
	return out.Body, nil
}

// Write implements Store.
func (s *S3Store) Write(ctx context.Context, key string, r io.Reader, size int64) error {
	body, err := sizedBody(r, size)
	if err != nil {
		return &storeError{op: "write", url: s.URL() + "/" + key, err: err}
	}
	// manager.Uploader is marked deprecated in favour of
	// feature/s3/transfermanager, which is not yet at v1; it is kept
	// until that is.
	up := manager.NewUploader(s.client(ctx), func(u *manager.Uploader) {
		u.PartSize = s.opts.PartSize
		u.Concurrency = s.opts.UploadConcurrency
	})
	in := &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key), Body: body}
	if _, err := up.Upload(ctx, in); err != nil {
		var se *shortError
		if errors.As(err, &se) {
			return &storeError{op: "write", url: s.URL() + "/" + key, err: se}
		}
		return s.fail("write", key, err)
	}
	return nil
}

// Delete implements Store.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	_, err := s.client(ctx).DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		err = s.fail("delete", key, err)
		if errors.Is(err, ErrNotExist) {
			return nil
		}
		return err
	}
	return nil
}

// CopyObject implements Copier.
func (s *S3Store) CopyObject(ctx context.Context, src, dst string) error {
	st, err := s.Stat(ctx, src)
	if err != nil {
		return err
	}
	if st.Size > maxS3CopySize {
		return streamCopy(ctx, s, src, dst, st.Size)
	}
	source := escapeKey(s.bucket + "/" + src)
	_, err = s.client(ctx).CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(dst), CopySource: aws.String(source)})
	if err != nil {
		return s.fail("copy to "+dst+" from", src, err)
	}
	return nil
}

// escapeKey percent-encodes a key for X-Amz-Copy-Source as AWS's own
// SDKs do: everything but unreserved characters and "/" (so "+" is sent
// as %2B and means itself).
func escapeKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// CreateBucket implements Store.
func (s *S3Store) CreateBucket(ctx context.Context) error {
	s.mu.Lock()
	cl := s.cl
	s.mu.Unlock()
	in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
	// AWS wants the region named, except in us-east-1.
	if r := cl.Options().Region; r != "us-east-1" && r != "auto" && s.endpoint == "" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(r)}
	}
	if _, err := cl.CreateBucket(ctx, in); err != nil {
		return s.fail("create bucket", "", err)
	}
	return nil
}

// DeleteBucket implements Store.
func (s *S3Store) DeleteBucket(ctx context.Context) error {
	if ok, err := s.BucketExists(ctx); err != nil {
		return err
	} else if !ok {
		return &storeError{op: "delete bucket", url: s.URL(), kind: ErrBucketNotExist}
	}
	cl := s.client(ctx)
	var batch []types.ObjectIdentifier
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		out, err := cl.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(s.bucket), Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)}})
		if err != nil {
			return s.fail("delete bucket", "", err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return &storeError{op: "delete bucket", url: s.URL() + "/" + aws.ToString(e.Key), err: errors.New(aws.ToString(e.Message))}
		}
		batch = batch[:0]
		return nil
	}
	for e, err := range s.List(ctx, "", ListOptions{}) {
		if err != nil {
			return err
		}
		batch = append(batch, types.ObjectIdentifier{Key: aws.String(e.Key)})
		if len(batch) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := cl.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		return s.fail("delete bucket", "", err)
	}
	return nil
}

// BucketExists implements Store.
func (s *S3Store) BucketExists(ctx context.Context) (bool, error) {
	_, err := s.client(ctx).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return true, nil
	}
	err = s.fail("check bucket", "", err)
	if errors.Is(err, ErrNotExist) || errors.Is(err, ErrBucketNotExist) {
		return false, nil
	}
	return false, err
}

// Close implements Store.
func (s *S3Store) Close() error { return nil }
