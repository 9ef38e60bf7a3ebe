package spec

// Storage modes.
const (
	ModeMount       = "MOUNT"
	ModeCopy        = "COPY"
	ModeMountCached = "MOUNT_CACHED"
)

// Storage is a storage object in `file_mounts`: a bucket that is created,
// uploaded to, mounted or copied.
type Storage struct {
	// Name is the bucket name. When the source is a bucket URI and no
	// name is written, it is the URI's bucket.
	Name string `json:"name,omitempty"`
	// NameUnset is set when `name:` was left null for the reader to fill
	// in (accepted only with Options.AllowUnset).
	NameUnset bool `json:"name_unset,omitempty"`
	// Source is a local directory or a bucket URI; SourceList is the list
	// form (local files and directories uploaded to the bucket's root).
	Source     string   `json:"source,omitempty"`
	SourceList []string `json:"source_list,omitempty"`
	// Store is s3, gcs, azure, r2, ibm, oci, nebius, coreweave, vastdata
	// or hf; "" lets sky-coord choose.
	Store string `json:"store,omitempty"`
	// Persistent storage outlives the cluster (default true).
	Persistent bool `json:"persistent"`
	// Mode is MOUNT (default), COPY or MOUNT_CACHED.
	Mode string `json:"mode"`
	// Type is a MOUNT_CACHED preset: MODEL_CHECKPOINT_RO,
	// MODEL_CHECKPOINT_RW, DATASET_RO or DATASET_RW.
	Type         string             `json:"type,omitempty"`
	MountOptions string             `json:"mount_options,omitempty"`
	Mount        *MountConfig       `json:"mount,omitempty"`
	MountCached  *MountCachedConfig `json:"mount_cached,omitempty"`
	// BucketSubPath is the internal `_bucket_sub_path`.
	BucketSubPath string `json:"bucket_sub_path,omitempty"`
}

// MountConfig is `config.mount` (MOUNT mode only).
type MountConfig struct {
	ReadOnly    bool     `json:"read_only,omitempty"`
	HFMountArgs []string `json:"hf_mount_args,omitempty"`
}

// MountCachedConfig is `config.mount_cached` (MOUNT_CACHED mode only);
// sizes and durations are rclone strings ("10G", "1s").
type MountCachedConfig struct {
	Transfers           int    `json:"transfers,omitempty"`
	BufferSize          string `json:"buffer_size,omitempty"`
	VFSCacheMaxSize     string `json:"vfs_cache_max_size,omitempty"`
	VFSCacheMaxAge      string `json:"vfs_cache_max_age,omitempty"`
	VFSReadAhead        string `json:"vfs_read_ahead,omitempty"`
	VFSReadChunkSize    string `json:"vfs_read_chunk_size,omitempty"`
	VFSReadChunkStreams *int   `json:"vfs_read_chunk_streams,omitempty"`
	VFSWriteBack        string `json:"vfs_write_back,omitempty"`
	ReadOnly            bool   `json:"read_only,omitempty"`
}
