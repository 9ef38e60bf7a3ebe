package workdir

import (
	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/transfer"
)

// DeltaFor returns the encoded delta from base (the manifest a tree was
// described by before) to id (the one it is described by now) for the
// job to carry (api.BlobRef.Delta), or nil when there is none or it
// would not pay: a head that synced base builds id from it instead of
// fetching the manifest, which is worth it only while the delta is much
// smaller than the manifest.
func DeltaFor(tree *transfer.Tree, base, id transfer.ChunkID) []byte {
	d, ok := tree.Change(base, id)
	if !ok || base == id || len(d.Changed)+len(d.Removed) > len(tree.Manifest.Entries)/2 {
		return nil
	}
	if enc := d.Encode(); len(enc) <= api.MaxBlobDelta {
		return enc
	}
	return nil
}
