package spec

import (
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// storageKeys are the fields of a storage object (get_storage_schema).
var storageKeys = []string{
	"name", "source", "store", "persistent", "mode", "mount_options", "type",
	"config", "_is_sky_managed", "_bucket_sub_path", "_force_delete",
}

var (
	storeTypes   = []string{"s3", "gcs", "azure", "r2", "ibm", "oci", "nebius", "coreweave", "vastdata", "hf", "volume"}
	storageModes = []string{ModeMount, ModeCopy, ModeMountCached}
	cachedTypes  = []string{"MODEL_CHECKPOINT_RO", "MODEL_CHECKPOINT_RW", "DATASET_RO", "DATASET_RW"}
	// uriSchemes are the bucket URI schemes a source may use.
	uriSchemes = []string{"s3", "gs", "https", "r2", "cos", "oci", "nebius", "cw", "vastdata", "hf"}
	// s3Compatible stores follow S3's bucket naming rules.
	s3Compatible = []string{"s3", "r2", "nebius", "coreweave", "vastdata"}
)

var reScheme = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*)://`)

// uriScheme returns the scheme of a URI ("s3"), or "" for a local path.
func uriScheme(s string) string {
	if m := reScheme.FindStringSubmatch(s); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}

// fileMounts reads `file_mounts` into t.FileMounts (sorted by Dst). Storage
// objects with `store: volume` become disks, returned to be added to the
// resources.
func (d *decoder) fileMounts(n *yaml.Node, t *Task) []DiskVolume {
	ps, ok := d.mapping(n, "file_mounts")
	if !ok {
		return nil
	}
	var volumes []DiskVolume
	for _, p := range ps {
		dst := p.key
		fpath := child("file_mounts", dst)
		kn := d.deref(p.k)
		if kk, _ := d.kindOf(p.k); kk != kStr {
			d.errorf(kn, "file_mounts", "a destination must be a path, got %s", d.describe(p.k))
			continue
		}
		if dst == "" {
			d.errorf(kn, "file_mounts", "a destination must not be empty")
			continue
		}
		if uriScheme(dst) != "" {
			d.errorf(kn, fpath, "a destination is a path on the nodes, not a bucket URI")
			continue
		}
		if len(dst) > 1 && strings.HasSuffix(dst, "/") {
			d.errorf(kn, fpath, "a destination must not end with /; write %q", strings.TrimRight(dst, "/"))
			continue
		}
		vk, vs := d.kindOf(p.v)
		switch vk {
		case kStr:
			src := vs.str
			if src == "" {
				d.errorf(d.deref(p.v), fpath, "the source must not be empty")
				continue
			}
			if len(src) > 1 && strings.HasSuffix(src, "/") {
				d.errorf(d.deref(p.v), fpath, "a source must not end with /; write %q", strings.TrimRight(src, "/"))
				continue
			}
			if sch := uriScheme(src); sch != "" && !contains(uriSchemes, sch) {
				d.errorf(d.deref(p.v), fpath, "unsupported URI scheme %q; a source is a local path or a bucket URI (%s)", sch+"://", strings.Join(uriSchemes, "://, ")+"://")
				continue
			}
			t.FileMounts = append(t.FileMounts, FileMount{Dst: dst, Src: src})
		case kMap:
			st, vol, extra := d.storage(p.v, fpath, dst)
			if vol != nil {
				volumes = append(volumes, *vol)
				if extra != nil {
					t.FileMounts = append(t.FileMounts, *extra)
				}
				continue
			}
			if st != nil {
				t.FileMounts = append(t.FileMounts, FileMount{Dst: dst, Storage: st})
			}
		default:
			d.errorf(d.deref(p.v), fpath, "must be a local path, a bucket URI, or a storage object {name, source, mode, ...}; got %s", d.describe(p.v))
		}
	}
	sort.SliceStable(t.FileMounts, func(i, j int) bool { return t.FileMounts[i].Dst < t.FileMounts[j].Dst })
	return volumes
}

// storage reads a storage object. A `store: volume` object is returned as
// a disk (and a copy of its source into DST/data).
func (d *decoder) storage(n *yaml.Node, p, dst string) (*Storage, *DiskVolume, *FileMount) {
	o, ok := d.object(n, p, storageKeys)
	if !ok {
		return nil, nil, nil
	}
	st := &Storage{Persistent: true, Mode: ModeMount}
	if v, ok := o.get("store"); ok {
		st.Store = d.enum(field{v: v, path: o.sub("store")}, storeTypes)
	}
	if st.Store == "volume" {
		return d.volumeStorage(o, dst)
	}
	if v, ok := o.get("name"); ok {
		st.Name, _ = d.str(v, o.sub("name"))
	}
	if v, ok := o.get("source"); ok {
		d.storageSource(v, o.sub("source"), st)
	}
	if v, ok := o.get("persistent"); ok {
		st.Persistent, _ = d.boolean(v, o.sub("persistent"))
	}
	if v, ok := o.get("mode"); ok {
		if m := d.enum(field{v: v, path: o.sub("mode")}, storageModes); m != "" {
			st.Mode = m
		}
	}
	if v, ok := o.get("mount_options"); ok {
		st.MountOptions, _ = d.str(v, o.sub("mount_options"))
	}
	if v, ok := o.get("type"); ok {
		if t := d.enum(field{v: v, path: o.sub("type")}, cachedTypes); t != "" {
			st.Type = t
			if st.Mode != ModeMountCached {
				d.errorf(o.keyNode("type"), o.sub("type"), "type is a MOUNT_CACHED preset; it needs mode: MOUNT_CACHED")
			}
		}
	}
	if v, ok := o.get("_bucket_sub_path"); ok {
		st.BucketSubPath, _ = d.str(v, o.sub("_bucket_sub_path"))
	}
	for _, k := range []string{"_is_sky_managed", "_force_delete"} {
		if v, ok := o.get(k); ok {
			d.boolean(v, o.sub(k))
		}
	}
	if v, ok := o.get("config"); ok {
		d.storageConfig(v, o.sub("config"), st)
	}
	d.checkStorage(o, st)
	return st, nil, nil
}

func (d *decoder) storageSource(v *yaml.Node, p string, st *Storage) {
	k, _ := d.kindOf(v)
	if k != kSeq {
		st.Source, _ = d.str(v, p)
		return
	}
	items, _ := d.seq(v, p)
	if len(items) == 0 {
		d.errorf(d.deref(v), p, "a list of sources must not be empty")
		return
	}
	bases := map[string]bool{}
	for i, it := range items {
		s, ok := d.str(it, index(p, i))
		if !ok {
			continue
		}
		if uriScheme(s) != "" {
			d.errorf(d.deref(it), index(p, i), "a list of sources holds local paths; a bucket URI goes alone in source")
			continue
		}
		b := path.Base(s)
		if bases[b] {
			d.errorf(d.deref(it), index(p, i), "two sources are named %q; they would collide at the bucket's root", b)
		}
		bases[b] = true
		st.SourceList = append(st.SourceList, s)
	}
}

// checkStorage applies SkyPilot's rules on name, source and mode.
func (d *decoder) checkStorage(o *object, st *Storage) {
	p := o.path
	for _, s := range append([]string{st.Name, st.Source}, st.SourceList...) {
		if d.refersToUnset(s) {
			return // checked once the variable is set
		}
	}
	if nameNode, ok := o.raw("name"); d.allowUnset && st.Name == "" && ok && d.isNull(nameNode) {
		// `name: # fill in your bucket name`: left for the reader.
		d.warnf(o.keyNode("name"), child(p, "name"), "the bucket name is left empty to fill in; set it before launching")
		st.NameUnset = true
		return
	}
	if st.Name == "" && st.Source == "" && len(st.SourceList) == 0 {
		at := o.node
		if o.has("name") {
			at = o.keyNode("name")
		}
		d.errorf(at, p, "a storage object needs a name (a bucket to create or reuse) or a source (a local directory or a bucket URI)")
		return
	}
	for _, s := range append([]string{st.Source}, st.SourceList...) {
		if len(s) > 1 && strings.HasSuffix(s, "/") && uriScheme(s) == "" {
			d.errorf(o.keyNode("source"), child(p, "source"), "a local source must not end with /; write %q", strings.TrimRight(s, "/"))
		}
	}
	local := len(st.SourceList) > 0 || (st.Source != "" && uriScheme(st.Source) == "")
	if st.Source != "" && !local {
		sch := uriScheme(st.Source)
		u, err := url.Parse(st.Source)
		switch {
		case !contains(uriSchemes, sch):
			d.errorf(o.keyNode("source"), child(p, "source"), "unsupported URI scheme %q; use a local path or %s", sch+"://", strings.Join(uriSchemes, "://, ")+"://")
			return
		case err != nil || u.Host == "":
			d.errorf(o.keyNode("source"), child(p, "source"), "invalid bucket URI %q; write SCHEME://BUCKET", st.Source)
			return
		}
		if st.Mode != ModeCopy && sch != "https" && sch != "hf" && !bucketRoot(sch, u) {
			d.errorf(o.keyNode("source"), child(p, "source"), "mode %s cannot mount a sub-path of a bucket (%s); use mode: COPY, or make the source the bucket itself (%s://%s)", st.Mode, st.Source, sch, u.Host)
		}
		if st.Name != "" {
			d.errorf(o.keyNode("name"), child(p, "name"), "name must not be set when source is a bucket URI: the bucket is the source's (%s); remove name", u.Host)
		}
		if st.Name == "" {
			st.Name = bucketName(sch, u)
		}
		return
	}
	if local && st.Name == "" {
		at := o.keyNode("source")
		if o.has("name") {
			at = o.keyNode("name")
		}
		d.errorf(at, p, "a storage with a local source needs a name: the bucket to upload it to")
		return
	}
	d.checkBucketName(o, st)
}

// bucketRoot reports whether the URI names a whole bucket.
func bucketRoot(scheme string, u *url.URL) bool {
	if scheme == "cos" {
		// cos://REGION/BUCKET
		return regexp.MustCompile(`^/[-\w]+(/\s*)?$`).MatchString(u.Path)
	}
	return strings.Trim(u.Path, "/") == ""
}

// bucketName is the bucket a URI names.
func bucketName(scheme string, u *url.URL) string {
	switch scheme {
	case "cos":
		return strings.SplitN(strings.Trim(u.Path, "/"), "/", 2)[0]
	case "https":
		return strings.SplitN(strings.Trim(u.Path, "/"), "/", 2)[0]
	}
	return u.Host
}

var (
	reS3Name  = regexp.MustCompile(`^[a-z0-9][-a-z0-9.]*[a-z0-9]$`)
	reGCSName = regexp.MustCompile(`^[a-z0-9][-a-z0-9._]*[a-z0-9]$`)
	reIPLike  = regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`)
)

// storeForCloud is the store SkyPilot picks for a storage without `store`
// when every candidate runs on the same cloud (Task._get_preferred_store);
// "" when that is not known before the optimizer runs.
func storeForCloud(r Resources) string {
	cands, _ := r.Candidates()
	cloud := ""
	for i, c := range cands {
		if c.Cloud == "" || (i > 0 && c.Cloud != cloud) {
			return ""
		}
		cloud = c.Cloud
	}
	return map[string]string{"aws": "s3", "gcp": "gcs", "azure": "azure", "ibm": "ibm", "oci": "oci", "nebius": "nebius"}[cloud]
}

var reAnyBucket = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9]$`)

// checkBucketName checks a bucket name against the rules of its store:
// `store`, else the store the task's cloud implies, else the rules every
// store shares.
func (d *decoder) checkBucketName(o *object, st *Storage) {
	name := st.Name
	np := child(o.path, "name")
	kn := o.keyNode("name")
	if name == "" || d.refersToUndefined(name) {
		// A $VAR left in the name may still be set with --env.
		return
	}
	if sch := strings.SplitN(name, "://", 2)[0]; contains(uriSchemes, strings.ToLower(sch)) {
		d.errorf(kn, np, "name %q must be a bucket name, not a URI; to use an existing bucket write source: %s, to create one set store", name, name)
		return
	}
	store, why := st.Store, ""
	if store == "" && d.defaultStore != "" {
		store, why = d.defaultStore, " (the store of the task's cloud)"
	}
	switch {
	case contains(s3Compatible, store):
		if p := s3NameProblem(name); p != "" {
			d.errorf(kn, np, "invalid bucket name %q for %s%s: %s", name, store, why, p)
		}
	case store == "gcs":
		if len(name) < 3 || len(name) > 222 || !reGCSName.MatchString(name) {
			d.errorf(kn, np, "invalid bucket name %q for gcs%s: use 3-63 lower-case letters, digits, -, _ and ., starting and ending with a letter or digit", name, why)
		}
	case store == "azure":
		if len(name) < 3 || len(name) > 63 || !regexp.MustCompile(`^[a-z0-9][a-z0-9-]*[a-z0-9]$`).MatchString(name) || strings.Contains(name, "--") {
			d.errorf(kn, np, "invalid container name %q for azure%s: use 3-63 lower-case letters, digits and single -", name, why)
		}
	case store == "":
		if len(name) < 3 || len(name) > 255 || !reAnyBucket.MatchString(name) {
			d.errorf(kn, np, "invalid bucket name %q: no store accepts it; use 3-63 lower-case letters, digits, - and ., starting and ending with a letter or digit", name)
		}
	}
}

func s3NameProblem(name string) string {
	switch {
	case len(name) < 3 || len(name) > 63:
		return "it must be 3 to 63 characters long"
	case !reS3Name.MatchString(name):
		return "use lower-case letters, digits, - and ., starting and ending with a letter or digit"
	case strings.Contains(name, ".."):
		return "it must not contain two adjacent periods"
	case reIPLike.MatchString(name):
		return "it must not look like an IP address"
	case strings.HasPrefix(name, "xn--"):
		return "it must not start with xn--"
	case strings.HasSuffix(name, "-s3alias") || strings.HasSuffix(name, "--ol-s3"):
		return "it must not end with -s3alias or --ol-s3"
	}
	return ""
}
