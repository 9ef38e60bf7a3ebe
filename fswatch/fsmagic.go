package fswatch

import "fmt"

// watchableFS names, by statfs magic number, the filesystems on which
// inotify sees every change: local ones, where every write goes through
// this kernel. On network and FUSE filesystems a change made by another
// machine, or by the server itself, raises no event here.
var watchableFS = map[uint32]string{
	0xEF53:     "ext4", // also ext2 and ext3
	0x58465342: "xfs",
	0x9123683E: "btrfs",
	0x01021994: "tmpfs",
	0xF2F52010: "f2fs",
	0x794C7630: "overlayfs",
	0x2FC12FC1: "zfs",
	0x858458F6: "ramfs",
}

// otherFS names some filesystems that are not watched, for the reason
// given in answers.
var otherFS = map[uint32]string{
	0x6969:     "nfs",
	0x65735546: "fuse",
	0x01021997: "9p",
	0xFF534D42: "cifs",
	0xFE534D42: "smb2",
	0x517B:     "smb",
	0x00C36400: "ceph",
	0x0BD00BD0: "lustre",
	0x47504653: "gpfs",
	0x5346414F: "afs",
	0x6B414653: "afs",
	0x73717368: "squashfs",
	0x9FA0:     "proc",
	0x62656572: "sysfs",
}

// magicReason returns why a filesystem with this statfs magic number is
// not watched, or "" when it is.
func magicReason(magic uint32) string {
	if _, ok := watchableFS[magic]; ok {
		return ""
	}
	if name, ok := otherFS[magic]; ok {
		return fmt.Sprintf("filesystem %s is not watched", name)
	}
	return fmt.Sprintf("filesystem with magic number %#x is not watched", magic)
}
