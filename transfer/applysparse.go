package transfer

// A re-sync whose cost is in the size of the change (ApplyOptions.Changes):
// when the manifest is a delta applied to the record of the last Apply,
// and a View or SkipUnchanged vouches for what is on disk at the paths
// the delta does not name, the plan and the apply look only at the
// delta's paths, the view's own layer's, and the directories above them.

import (
	"iter"
	"slices"
)

// maxSparseShare: past this share of the entries looked at, a sparse
// apply saves nothing, and the whole manifest is planned as usual.
const maxSparseShare = 4

// sparseLook returns the sorted indexes of the entries this apply must look
// at when it may skip the rest (see ApplyOptions.Changes), or nil for all:
// the root, the entries the delta changed, those the view's own layer holds
// or hides, the nearest remaining directory above a removed path, and every
// directory above all of these (writing there, or setting their times, goes
// through them).
//
// In a view, it also looks at the recorded paths the lower layer lacks: an
// earlier sync put them in the view's own layer, and should the job delete
// one, overlayfs leaves no trace of it there (nothing below to hide). So a
// record is the base of a sparse apply only when it knows those paths for
// this lower layer: LayerFrom's, and those of Applies in views over it.
func (a *applier) sparseLook(view *viewLookup) []int {
	d, r := a.opts.Changes, a.opts.Record
	if d == nil || r == nil || a.prev != r.st {
		return nil
	}
	if view != nil && a.prev.lowerOf != view.v.Lower || view == nil && !a.opts.SkipUnchanged {
		return nil
	}
	entries := a.m.Entries
	limit := len(entries) / maxSparseShare
	seen := map[int]bool{0: true}
	look := []int{0}
	add := func(i int) bool {
		for i > 0 && !seen[i] {
			seen[i] = true
			look = append(look, i)
			i = findEntry(entries, parentPath(entries[i].Path))
		}
		return len(look) <= limit
	}
	for k := range d.Changed {
		i := findEntry(entries, d.Changed[k].Path)
		if i < 0 || !add(i) {
			return nil // not this manifest's delta, or too big
		}
	}
	for _, p := range d.Removed {
		for p != RootPath {
			p = parentPath(p)
			if i := findEntry(entries, p); i >= 0 {
				if !add(i) {
					return nil
				}
				break
			}
		}
	}
	if view != nil {
		for _, i := range view.changedIdx {
			if !add(i) {
				return nil
			}
		}
		for _, p := range a.prev.notInLower {
			if i := findEntry(entries, p); i >= 0 && !add(i) {
				return nil
			}
		}
	}
	slices.Sort(look)
	return look
}

// each yields, in order, the indexes from lo on of the entries this apply
// looks at: all of them, or those sparseLook chose.
func (a *applier) each(lo int) iter.Seq[int] {
	return func(yield func(int) bool) {
		if a.look == nil {
			for i := lo; i < len(a.m.Entries); i++ {
				if !yield(i) {
					return
				}
			}
			return
		}
		for _, i := range a.look[findInt(a.look, lo):] {
			if !yield(i) {
				return
			}
		}
	}
}

// eachDown is each(0) in reverse order: deepest paths first.
func (a *applier) eachDown() iter.Seq[int] {
	return func(yield func(int) bool) {
		if a.look == nil {
			for i := len(a.m.Entries) - 1; i >= 0; i-- {
				if !yield(i) {
					return
				}
			}
			return
		}
		for k := len(a.look) - 1; k >= 0; k-- {
			if !yield(a.look[k]) {
				return
			}
		}
	}
}

// act returns the action for entry i, which the apply looks at.
func (a *applier) act(i int) *action { return &a.actions[a.slot(i)] }

// slot returns where the plan keeps what concerns entry i: at i, or, in a
// sparse apply, at i's place in look.
func (a *applier) slot(i int) int {
	if a.look == nil {
		return i
	}
	return findInt(a.look, i)
}

func findInt(sorted []int, v int) int {
	k, _ := slices.BinarySearch(sorted, v)
	return k
}

// prevAt returns the index in the last Apply's record of the path of entry
// i, or -1.
func (a *applier) prevAt(i int) int {
	if a.from != nil {
		return a.from[i]
	}
	return a.prev.find(a.m.Entries[i].Path)
}

// goneSparse returns the indexes, in the last Apply's record, of the paths
// the delta removed and the manifest lacks: what deleteGone considers.
func (a *applier) goneSparse() []int {
	var gone []int
	for _, p := range a.opts.Changes.Removed {
		if j := a.prev.find(p); j >= 0 && findEntry(a.m.Entries, p) < 0 {
			gone = append(gone, j)
		}
	}
	return gone
}

// saveSparse is saveState for a sparse apply: the records of the entries
// it did not look at are the last Apply's, carried over by the delta's
// merge; those it looked at are what it found or wrote.
func (a *applier) saveSparse() error {
	d, prev := a.opts.Changes, a.prev
	var buf []fileRecord
	if r := a.opts.Reuse; r != nil && r.st != prev {
		buf = r.st.recs
	}
	recs := mergeRecords(prev.entries, prev.recs, d.Removed, d.Changed, buf)
	next := &applyState{dst: prev.dst, entries: a.m.Entries, recs: recs}
	var changed []int
	for _, i := range a.look {
		e := &a.m.Entries[i]
		if e.Type == TypeFile {
			recs[i] = a.act(i).rec
		} else {
			recs[i] = fileRecord{}
		}
		if j := a.prevAt(i); j < 0 || recs[i] != prev.recs[j] || !sameEntry(e, &prev.entries[j]) {
			changed = append(changed, i)
		}
	}
	var removed []string
	for _, j := range a.goneSparse() {
		removed = append(removed, prev.entries[j].Path)
	}
	slices.SortFunc(removed, comparePaths)
	if err := prev.commit(a.state, next, removed, changed); err != nil {
		return err
	}
	if a.view != nil {
		// What the lower layer lacks: the apply looked at every such path
		// of the last record that the manifest still has (sparseLook).
		next.lowerOf = prev.lowerOf
		for _, i := range a.look {
			if p := a.m.Entries[i].Path; findEntry(next.lowerOf.entries, p) < 0 {
				next.notInLower = append(next.notInLower, p)
			}
		}
	}
	a.next = next
	return nil
}

// SpareRecord returns an empty record holding memory for n entries and
// their file records, touched already, to lend to the next re-sync of a
// destination (Delta.ApplyInto, ApplyOptions.Reuse) when no spent record
// is at hand: a re-sync then faults in no fresh memory.
func SpareRecord(n int) *Record {
	st := &applyState{entries: make([]Entry, n), recs: make([]fileRecord, n)}
	// Fresh memory from the system is not even cleared: write to every
	// page, so that it is the system's no longer.
	for i := 0; i < n; i += 16 {
		st.entries[i].Size, st.recs[i].size = 0, 0
	}
	st.entries, st.recs = st.entries[:0], st.recs[:0]
	return &Record{st: st}
}
