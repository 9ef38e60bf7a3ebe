// Package mounts puts buckets on nodes: object stores behind one Store
// interface (S3 and S3-compatible stores, Google Cloud Storage, a local
// directory) and SkyPilot's three storage modes over them: COPY, MOUNT
// (FUSE, streaming) and MOUNT_CACHED (FUSE over a disk cache, written
// files uploaded in the background).
//
// # For the agent
//
// One call per file_mounts entry, before setup:
//
//	m, err := mounts.Mount(ctx, mounts.MountSpec{
//		Dst:      "/data",                 // created when missing
//		URL:      "s3://bucket/prefix",    // gs://, r2://, file:///dir too
//		Mode:     mounts.ModeMountCached,  // mounts.ParseMode(task's "mode")
//		CacheDir: filepath.Join(home, ".sky", "mount_cache", hashOf(dst)), // MOUNT_CACHED: required, kept across restarts
//		Logger:   log,
//	})
//
// COPY returns once the objects are on disk (a failed object fails the
// call with its name); MOUNT and MOUNT_CACHED return once the file system
// is mounted and served by this process's goroutines. A missing bucket
// (ErrBucketNotExist), refused credentials (ErrPermission) or none
// (ErrCredentials) fail Mount before anything is mounted.
//
// Before reporting a job finished, and before stop or down, call
//
//	err := m.Flush(ctx, func(p mounts.UploadProgress) { /* print p.Files, p.Bytes left */ })
//
// which returns once every file written under a MOUNT_CACHED mount is in
// the bucket (nil at once for the other modes). Then, or at agent
// shutdown, m.Unmount(ctx): it flushes (bounded by ctx), unmounts (lazily
// detaching a mount kept busy by open files), and closes the store;
// afterwards the path is gone from /proc/self/mountinfo (IsMounted).
//
// Crash recovery: MOUNT_CACHED journals each written file in CacheDir
// before changing it. A later Mount with the same CacheDir (and URL)
// uploads whatever the journal still names, before and while serving;
// ResumeUploads does the same without mounting. Mount also detaches the
// dead mount a killed process left at Dst. So a restarted agent that
// mounts its storage again with the same CacheDir loses no written file.
// A CacheDir is locked (flock) by the process using it.
//
// # Semantics
//
//   - MOUNT: directories are key prefixes (mkdir writes a "dir/" marker).
//     Reads stream through ranged reads of ChunkSize with ReadAhead chunks
//     in flight for sequential readers. A created, O_TRUNC-opened, empty or
//     ftruncate(0)-ed file is staged locally and uploaded whole at each
//     close(2) that follows writes; appending to, or writing inside, an
//     object with content fails with ENOTSUP and a log line naming the
//     file. Renaming a file copies and deletes the object; renaming a
//     directory answers EXDEV (mv then copies). Sizes and listings are
//     trusted for MetadataTTL (default 1s): a file closed on one node is
//     seen by an open on another after that (close-to-open).
//   - MOUNT_CACHED: a file's object is fetched into CacheDir in parallel
//     chunks on first open (reads wait only for the chunks they need);
//     writes of any kind go to the cached file; a closed file uploads after
//     WriteBack (default 1s), Transfers (default 4) at a time, retried with
//     back-off. CacheBytes (default 10 GiB) caps the cache: clean files are
//     evicted least recently used first; files not yet uploaded never are.
//   - ReadOnly mounts answer EROFS to every change.
//
// # Credentials and endpoints
//
// Each client's standard chain, nothing of this package's own:
//
//   - s3://: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and
//     ~/.aws/{credentials,config}, SSO, IMDS; AWS_REGION (us-east-1 when
//     none; for AWS itself the bucket's region is looked up). An
//     S3-compatible endpoint comes from AWS_ENDPOINT_URL_S3, else
//     AWS_ENDPOINT_URL; an endpoint on an IP address or localhost gets
//     path-style addressing. AWS_CA_BUNDLE works: the SDK builds its own
//     transport.
//   - r2://: endpoint https://ACCOUNT.r2.cloudflarestorage.com with ACCOUNT
//     from R2_ACCOUNT_ID, CLOUDFLARE_ACCOUNT_ID or ~/.cloudflare/accountid;
//     credentials from profile "r2" of ~/.cloudflare/r2.credentials when
//     present, else the AWS chain.
//   - gs://: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
//     gcloud's ADC file, the metadata server); STORAGE_EMULATOR_HOST points
//     it at an emulator; GOOGLE_CLOUD_PROJECT names the project for
//     CreateBucket.
//   - file:///dir: the directory is the bucket (the embedded default).
//
// FUSE mounting uses mount(2) directly, so it needs root (or CAP_SYS_ADMIN)
// and /dev/fuse; it falls back to fusermount3 when installed. The mount is
// made in the calling process's mount namespace. When the process runs as
// root the mount has allow_other, so jobs running as other users see it.
package mounts
