package transfer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// A re-sync that changes little appends a journal record to the state
// file instead of writing it whole; the file reads back as the record in
// memory; past maxJournalRecords, or after a torn append, it is written
// whole again.
func TestStateJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	for i := range 200 {
		mustNo(t, os.MkdirAll(filepath.Join(src, fmt.Sprint("d", i%4)), 0o755))
		mustNo(t, osWriteFile(src, fmt.Sprintf("d%d/f%d", i%4, i), fmt.Sprint("content ", i)))
	}
	store := newMemStore()
	absDst, _ := filepath.Abs(dst)
	stateFile := DefaultStateFile(absDst)
	var rec *Record
	sync := func(step string) {
		t.Helper()
		tree := uploadTree(t, src, store)
		p, err := PlanApply(&tree.Manifest, dst, ApplyOptions{Record: rec})
		mustNo(t, err)
		if _, err := p.Apply(ctx, store); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		rec = p.Record()
		got := loadState(stateFile, absDst)
		if diff := cmp.Diff(rec.st.entries, got.entries); diff != "" {
			t.Fatalf("%s: state file's entries differ from the record (-memory +file):\n%s", step, diff)
		}
		if !slices.Equal(rec.st.recs, got.recs) {
			t.Fatalf("%s: state file's file records differ from the record's", step)
		}
	}
	size := func() int64 {
		fi, err := os.Stat(stateFile)
		mustNo(t, err)
		return fi.Size()
	}
	sync("first sync")
	whole := size()

	for i := range maxJournalRecords {
		mustNo(t, osWriteFile(src, "d1/f1", fmt.Sprint("changed ", i)))
		if i == 3 {
			mustNo(t, os.Remove(filepath.Join(src, "d2", "f2")))
		}
		before := size()
		sync(fmt.Sprint("re-sync ", i))
		if after := size(); after <= before || after-before > whole/4 {
			t.Fatalf("re-sync %d: state file went from %d to %d bytes (whole: %d), want a small journal record appended", i, before, after, whole)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "d2", "f2")); !os.IsNotExist(err) {
		t.Fatalf("d2/f2 left the source but is still in dst: %v", err)
	}
	mustNo(t, osWriteFile(src, "d1/f1", "once more"))
	sync("re-sync past the journal's bound")
	if got := size(); got >= whole {
		t.Fatalf("state file is %d bytes past the journal's bound, want it written whole (%d bytes or less)", got, whole)
	}

	// A torn append: the file reads up to the tear, and is written whole
	// by the next Apply.
	mustNo(t, osWriteFile(src, "d1/f1", "torn"))
	sync("re-sync before the tear")
	data, err := os.ReadFile(stateFile)
	mustNo(t, err)
	mustNo(t, os.WriteFile(stateFile, data[:len(data)-3], 0o600))
	torn := loadState(stateFile, absDst)
	if !torn.rewrite || torn.records != 0 {
		t.Fatalf("torn journal read as %d records, rewrite %v; want none and a rewrite", torn.records, torn.rewrite)
	}
	rec = nil
	mustNo(t, osWriteFile(src, "d1/f1", "after the tear"))
	sync("re-sync after the tear")
	if got := loadState(stateFile, absDst); got.rewrite || got.records != 0 {
		t.Fatalf("after a tear, the state file was not written whole: %d records, rewrite %v", got.records, got.rewrite)
	}
}

// mergeEntries agrees with the obvious map-based merge on random lists,
// including removed paths that are not there and paths both removed and
// changed.
func TestMergeEntries(t *testing.T) {
	t.Parallel()
	for seed := range uint64(500) {
		rng := rand.New(rand.NewPCG(seed, 3))
		pick := func(n int) map[string]bool {
			m := map[string]bool{}
			for range rng.IntN(n) {
				m[fmt.Sprintf("p%02d", rng.IntN(40))] = true
			}
			return m
		}
		want := map[string]Entry{}
		var entries []Entry
		for p := range pick(30) {
			want[p] = Entry{Path: p, Size: 1}
			entries = append(entries, want[p])
		}
		var removed []string
		for p := range pick(6) {
			removed = append(removed, p)
			delete(want, p)
		}
		var changed []Entry
		for p := range pick(6) {
			changed = append(changed, Entry{Path: p, Size: 2})
			want[p] = Entry{Path: p, Size: 2}
		}
		sortByPath := func(es []Entry) {
			slices.SortFunc(es, func(a, b Entry) int { return comparePaths(a.Path, b.Path) })
		}
		sortByPath(entries)
		sortByPath(changed)
		slices.SortFunc(removed, comparePaths)
		recs := make([]fileRecord, len(entries))
		for i := range recs {
			recs[i].size = 1
		}
		changedRecs := make([]fileRecord, len(changed))
		for i := range changedRecs {
			changedRecs[i].size = 2
		}
		got, gotRecs := mergeEntries(entries, recs, removed, changed, changedRecs)
		var wantList []Entry
		for _, e := range want {
			wantList = append(wantList, e)
		}
		sortByPath(wantList)
		if diff := cmp.Diff(wantList, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("seed %d: merge (-want +got):\n%s", seed, diff)
		}
		for i := range got {
			if gotRecs[i].size != got[i].Size {
				t.Fatalf("seed %d: record %d does not go with its entry", seed, i)
			}
		}
	}
}
