package spec

import (
	"math"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	reRcloneSize     = regexp.MustCompile(`^[0-9]+(b|k|m|g|t|p|B|K|M|G|T|P)?$`)
	reRcloneDuration = regexp.MustCompile(`^(?:(?:[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:ms|[smhdwMy]))+|([-+]?(?:\d+(?:\.\d+)?|\.\d+)))$`)
)

var storageConfigKeys = []string{"disk_size", "disk_tier", "storage_type", "attach_mode", "mount_cached", "mount"}

// storageConfig reads a storage object's `config`.
func (d *decoder) storageConfig(n *yaml.Node, p string, st *Storage) {
	o, ok := d.object(n, p, storageConfigKeys)
	if !ok {
		return
	}
	for _, k := range []string{"disk_tier", "storage_type", "attach_mode"} {
		if v, ok := o.get(k); ok {
			d.str(v, o.sub(k))
		}
	}
	if v, ok := o.get("disk_size"); ok {
		d.diskSize(field{v: v, path: o.sub("disk_size")})
	}
	if v, ok := o.get("mount"); ok {
		mp := o.sub("mount")
		if st.Mode != ModeMount {
			d.errorf(o.keyNode("mount"), mp, "config.mount applies to mode MOUNT only (this storage is %s)", st.Mode)
		}
		if mo, ok := d.object(v, mp, []string{"read_only", "hf_mount_args"}); ok {
			st.Mount = &MountConfig{}
			if b, ok := mo.get("read_only"); ok {
				st.Mount.ReadOnly, _ = d.boolean(b, mo.sub("read_only"))
			}
			if a, ok := mo.get("hf_mount_args"); ok {
				if items, ok := d.seq(a, mo.sub("hf_mount_args")); ok {
					for i, it := range items {
						if s, ok := d.str(it, index(mo.sub("hf_mount_args"), i)); ok {
							st.Mount.HFMountArgs = append(st.Mount.HFMountArgs, s)
						}
					}
				}
			}
		}
	}
	if v, ok := o.get("mount_cached"); ok {
		mp := o.sub("mount_cached")
		if st.Mode != ModeMountCached {
			d.errorf(o.keyNode("mount_cached"), mp, "config.mount_cached applies to mode MOUNT_CACHED only (this storage is %s)", st.Mode)
		}
		st.MountCached = d.mountCached(v, mp)
	}
}

func (d *decoder) mountCached(n *yaml.Node, p string) *MountCachedConfig {
	o, ok := d.object(n, p, []string{
		"transfers", "buffer_size", "vfs_cache_max_size", "vfs_cache_max_age",
		"vfs_read_ahead", "vfs_read_chunk_size", "vfs_read_chunk_streams",
		"vfs_write_back", "read_only",
	})
	if !ok {
		return nil
	}
	mc := &MountCachedConfig{}
	if v, ok := o.get("transfers"); ok {
		if t, ok := d.integer(v, o.sub("transfers")); ok {
			if t < 1 {
				d.errorf(d.deref(v), o.sub("transfers"), "must be at least 1")
			}
			mc.Transfers = t
		}
	}
	if v, ok := o.get("vfs_read_chunk_streams"); ok {
		if t, ok := d.integer(v, o.sub("vfs_read_chunk_streams")); ok {
			if t < 0 {
				d.errorf(d.deref(v), o.sub("vfs_read_chunk_streams"), "must not be negative")
			}
			mc.VFSReadChunkStreams = &t
		}
	}
	if v, ok := o.get("read_only"); ok {
		mc.ReadOnly, _ = d.boolean(v, o.sub("read_only"))
	}
	sizes := []struct {
		key  string
		dst  *string
		size bool
	}{
		{"buffer_size", &mc.BufferSize, true},
		{"vfs_cache_max_size", &mc.VFSCacheMaxSize, true},
		{"vfs_read_ahead", &mc.VFSReadAhead, true},
		{"vfs_read_chunk_size", &mc.VFSReadChunkSize, true},
		{"vfs_cache_max_age", &mc.VFSCacheMaxAge, false},
		{"vfs_write_back", &mc.VFSWriteBack, false},
	}
	for _, s := range sizes {
		v, ok := o.get(s.key)
		if !ok {
			continue
		}
		str, ok := d.str(v, o.sub(s.key))
		if !ok {
			continue
		}
		if s.size && !reRcloneSize.MatchString(str) {
			d.errorf(d.deref(v), o.sub(s.key), "must be a size like \"64M\" or \"10G\" (units b, k, m, g, t, p), got %q", str)
			continue
		}
		if !s.size && !reRcloneDuration.MatchString(str) {
			d.errorf(d.deref(v), o.sub(s.key), "must be a duration like \"1s\", \"5m\" or \"1h30m\", got %q", str)
			continue
		}
		*s.dst = str
	}
	return mc
}

// volumeStorage turns a `store: volume` storage object into a disk
// mounted at dst, and its source (if any) into a copy to dst/data.
func (d *decoder) volumeStorage(o *object, dst string) (*Storage, *DiskVolume, *FileMount) {
	v := &DiskVolume{Path: dst, StorageType: "network", AttachMode: "read_write", AutoDelete: true}
	if n, ok := o.get("name"); ok {
		v.Name, _ = d.str(n, o.sub("name"))
	}
	if n, ok := o.get("persistent"); ok {
		if b, ok := d.boolean(n, o.sub("persistent")); ok {
			v.AutoDelete = !b
		}
	}
	for _, k := range []string{"mode", "type", "mount_options"} {
		if o.has(k) {
			d.errorf(o.keyNode(k), o.sub(k), "%s does not apply to store: volume", k)
		}
	}
	if n, ok := o.get("config"); ok {
		if co, ok := d.object(n, o.sub("config"), []string{"disk_size", "disk_tier", "storage_type", "attach_mode"}); ok {
			d.diskFields(co, v)
		}
	}
	if v.StorageType == "network" && v.Name == "" && v.Path != "" {
		d.errorf(o.node, o.path, "a network volume needs a name")
	}
	var copyMount *FileMount
	if n, ok := o.get("source"); ok {
		if s, ok := d.str(n, o.sub("source")); ok {
			copyMount = &FileMount{Dst: strings.TrimRight(dst, "/") + "/data", Src: s}
		}
	}
	return nil, v, copyMount
}

// diskVolume reads one entry of resources.volumes.
func (d *decoder) diskVolume(n *yaml.Node, p, _ string) (DiskVolume, bool) {
	o, ok := d.object(n, p, []string{"disk_size", "disk_tier", "path", "auto_delete", "storage_type", "name", "attach_mode"})
	if !ok {
		return DiskVolume{}, false
	}
	v := DiskVolume{StorageType: "network", AttachMode: "read_write"}
	if x, ok := o.get("path"); ok {
		v.Path, _ = d.str(x, o.sub("path"))
	} else {
		d.errorf(o.node, p, "a volume needs a path (where it is mounted)")
	}
	if x, ok := o.get("name"); ok {
		v.Name, _ = d.str(x, o.sub("name"))
	}
	if x, ok := o.get("auto_delete"); ok {
		v.AutoDelete, _ = d.boolean(x, o.sub("auto_delete"))
	}
	d.diskFields(o, &v)
	if v.StorageType == "network" {
		if v.Name == "" {
			d.errorf(o.node, p, "a network volume needs a name")
		}
		if v.DiskTier == "" {
			v.DiskTier = "best"
		}
	} else {
		v.Name = ""
	}
	return v, true
}

// diskFields reads disk_size, disk_tier, storage_type and attach_mode.
func (d *decoder) diskFields(o *object, v *DiskVolume) {
	if x, ok := o.get("storage_type"); ok {
		if s := d.enum(field{v: x, path: o.sub("storage_type")}, []string{"network", "instance"}); s != "" {
			v.StorageType = s
		}
	}
	if x, ok := o.get("attach_mode"); ok {
		if s := d.enum(field{v: x, path: o.sub("attach_mode")}, []string{"read_write", "read_only"}); s != "" {
			v.AttachMode = s
		}
	}
	if x, ok := o.get("disk_tier"); ok {
		v.DiskTier = d.enum(field{v: x, path: o.sub("disk_tier")}, []string{"low", "medium", "high", "ultra", "best"})
	}
	if x, ok := o.get("disk_size"); ok {
		k, s := d.kindOf(x)
		if k == kFloat && s.f != math.Trunc(s.f) {
			d.errorf(d.deref(x), o.sub("disk_size"), "must be a whole number of GB")
		} else {
			v.DiskSize = d.diskSize(field{v: x, path: o.sub("disk_size")})
		}
	}
}

// addVolumes adds disks from `store: volume` file mounts to the resources
// and to each candidate.
func addVolumes(r *Resources, vols []DiskVolume) {
	r.Volumes = append(r.Volumes, vols...)
	for i := range r.AnyOf {
		r.AnyOf[i].Volumes = append(r.AnyOf[i].Volumes, vols...)
	}
	for i := range r.Ordered {
		r.Ordered[i].Volumes = append(r.Ordered[i].Volumes, vols...)
	}
}
