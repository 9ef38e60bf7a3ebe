package transfer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The benchmark tree is the issue's: about 200 MB, 5,000 small files and a
// few 20 MB ones. SKY_BENCH_SMALL=1 shrinks it tenfold for a quick look.
func benchTreeShape() (small, big int) {
	if os.Getenv("SKY_BENCH_SMALL") != "" {
		return 500, 1
	}
	return 5000, 5
}

// makeBenchTree writes the benchmark tree under dir: small files of 1 to
// 40 KB in 50×7 directories, and big files of 20 MB at the root.
func makeBenchTree(tb testing.TB, dir string) {
	tb.Helper()
	small, big := benchTreeShape()
	rng := rand.New(rand.NewPCG(1, 1))
	fill := func(n int) []byte {
		b := make([]byte, n)
		for i := 0; i < n; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < n; j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		return b
	}
	for i := range small {
		d := filepath.Join(dir, fmt.Sprintf("pkg%02d", i%50), fmt.Sprintf("mod%d", i%7))
		mustNo(tb, os.MkdirAll(d, 0o755))
		mustNo(tb, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d.py", i)), fill(1000+rng.IntN(39000)), 0o644))
	}
	for i := range big {
		mustNo(tb, os.WriteFile(filepath.Join(dir, fmt.Sprintf("weights%d.bin", i)), fill(20<<20), 0o644))
	}
	// Old times, so the stat cache trusts every file.
	old := time.Now().Add(-time.Hour)
	mustNo(tb, filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	}))
}

var benchTree struct {
	once sync.Once
	dir  string
}

// TestMain removes the benchmark tree, which outlives single benchmarks.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchTree.dir != "" {
		_ = os.RemoveAll(filepath.Dir(benchTree.dir)) // best effort: a temporary directory
	}
	os.Exit(code)
}

// sharedBenchTree makes the tree once per test binary run.
func sharedBenchTree(b *testing.B) string {
	benchTree.once.Do(func() {
		dir, err := os.MkdirTemp("", "sky-bench-tree-")
		mustNo(b, err)
		src := filepath.Join(dir, "src")
		mustNo(b, os.Mkdir(src, 0o755))
		makeBenchTree(b, src)
		benchTree.dir = src
	})
	return benchTree.dir
}

func BenchmarkBuildManifest(b *testing.B) {
	src := sharedBenchTree(b)
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		var bytes int64
		for b.Loop() {
			tree, err := BuildManifest(ctx, src, BuildOptions{})
			mustNo(b, err)
			bytes = tree.Stats.Bytes
		}
		b.SetBytes(bytes)
	})
	b.Run("statcache", func(b *testing.B) {
		cache := NewStatCache()
		_, err := BuildManifest(ctx, src, BuildOptions{Cache: cache})
		mustNo(b, err)
		for b.Loop() {
			tree, err := BuildManifest(ctx, src, BuildOptions{Cache: cache})
			mustNo(b, err)
			if tree.Stats.Read != 0 {
				b.Fatalf("stat cache: %d files read again", tree.Stats.Read)
			}
		}
	})
}

func BenchmarkApply(b *testing.B) {
	src := sharedBenchTree(b)
	ctx := context.Background()
	tmp := b.TempDir()
	store, err := NewDiskStore(filepath.Join(tmp, "store"))
	mustNo(b, err)
	tree, err := BuildManifest(ctx, src, BuildOptions{})
	mustNo(b, err)
	_, _, err = Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
	mustNo(b, err)
	b.Run("fresh", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			dst := filepath.Join(tmp, fmt.Sprint("fresh", i))
			_, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
			mustNo(b, err)
			b.StopTimer()
			mustNo(b, os.RemoveAll(dst))
			b.StartTimer()
		}
		b.SetBytes(tree.Stats.Bytes)
	})
	b.Run("noop", func(b *testing.B) {
		dst := filepath.Join(tmp, "noop")
		_, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
		mustNo(b, err)
		for b.Loop() {
			st, err := Apply(ctx, &tree.Manifest, store, dst, ApplyOptions{})
			mustNo(b, err)
			if st.Written != 0 {
				b.Fatalf("no-op apply wrote %d files", st.Written)
			}
		}
	})
}

// BenchmarkResync is a node's part of a re-sync after one changed file,
// as an agent does it: the manifest built from the head's delta against
// the record kept from the last sync, then planned and applied.
func BenchmarkResync(b *testing.B) {
	src := sharedBenchTree(b)
	ctx := context.Background()
	tmp := b.TempDir()
	store, err := NewDiskStore(filepath.Join(tmp, "store"))
	mustNo(b, err)
	upload := func() (*Manifest, ChunkID) {
		tree, err := BuildManifest(ctx, src, BuildOptions{})
		mustNo(b, err)
		id, _, err := Upload(ctx, &tree.Manifest, tree, store, UploadOptions{})
		mustNo(b, err)
		return &tree.Manifest, id
	}
	m1, id1 := upload()
	var changed string
	for _, e := range m1.Entries {
		if e.Type == TypeFile {
			changed = filepath.Join(src, filepath.FromSlash(e.Path))
			break
		}
	}
	old, err := os.ReadFile(changed)
	mustNo(b, err)
	mustNo(b, os.WriteFile(changed, append(old, "changed"...), 0o644))
	m2, id2 := upload()
	mustNo(b, os.WriteFile(changed, old, 0o644))
	deltas := [2]Delta{Diff(m1, id1, m2, id2), Diff(m2, id2, m1, id1)}
	dst := filepath.Join(tmp, "node", "sky_workdir")
	opts := ApplyOptions{StateFile: filepath.Join(tmp, "node", "state")}
	p, err := PlanApply(m1, dst, opts)
	mustNo(b, err)
	_, err = p.Apply(ctx, store)
	mustNo(b, err)
	rec := p.Record()
	// A node of a machine's cluster syncs a copy-on-write view of the
	// machine's copy: what it holds is known from the copy's record, and
	// only what the view's own layer holds is looked at. Here the view
	// is a plain copy, described as one.
	lower, err := LayerFrom(dst, rec)
	mustNo(b, err)
	view := &View{Lower: lower, Upper: []string{changed[len(src)+1:]}}
	i := 0
	var spare *Record // as an agent keeps it: the record before last, once its entries are the loop's
	for b.Loop() {
		d := &deltas[i%2]
		var buf []Entry
		if spare != nil {
			buf = spare.Entries()
		}
		m, err := d.ApplyInto(rec.Entries(), buf)
		mustNo(b, err)
		p, err := PlanApply(&m, dst, ApplyOptions{StateFile: opts.StateFile, Record: rec, View: view, Validated: true, Changes: d, Reuse: spare})
		mustNo(b, err)
		st, err := p.Apply(ctx, store)
		mustNo(b, err)
		if st.Written != 1 {
			b.Fatalf("re-sync wrote %d files, want 1", st.Written)
		}
		if spare = nil; i > 0 {
			spare = rec
		}
		rec = p.Record()
		i++
	}
}

// benchCluster is a coordinator store and n nodes, each with a chunk store
// served over HTTP on loopback, as the agent will run them.
type benchCluster struct {
	coord     *DiskStore
	coordURL  string
	stores    []*DiskStore
	urls      []string
	workdirs  []string
	servers   []*httptest.Server
	client    *http.Client
	cacheFile string
	applyOpts ApplyOptions
}

func newBenchCluster(tb testing.TB, dir string, nodes int) *benchCluster {
	c := &benchCluster{client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	serve := func(s *DiskStore, put bool) string {
		mux := http.NewServeMux()
		mux.Handle("/v1/chunks/", http.StripPrefix("/v1/chunks", ChunkHandler(s, HandlerOptions{AllowPut: put})))
		srv := httptest.NewServer(mux)
		c.servers = append(c.servers, srv)
		return srv.URL + "/v1/chunks"
	}
	var err error
	c.coord, err = NewDiskStore(filepath.Join(dir, "coord"))
	mustNo(tb, err)
	c.coordURL = serve(c.coord, true)
	for i := range nodes {
		s, err := NewDiskStore(filepath.Join(dir, fmt.Sprint("node", i), "chunks"))
		mustNo(tb, err)
		c.stores = append(c.stores, s)
		c.urls = append(c.urls, serve(s, false))
		c.workdirs = append(c.workdirs, filepath.Join(dir, fmt.Sprint("node", i), "sky_workdir"))
	}
	c.cacheFile = filepath.Join(dir, "statcache")
	return c
}

func (c *benchCluster) close() {
	for _, s := range c.servers {
		s.Close()
	}
}

// syncStats is what one sync of the cluster moved.
type syncStats struct {
	upload      UploadStats
	fromOrigins int // chunks the head's workers took from the head
	fetched     int
}

// sync does what client, head and workers will do: the client builds and
// uploads to the coordinator; the head fetches from the coordinator; the
// workers fetch from the head and from each other, all at once; every node
// applies.
func (c *benchCluster) sync(ctx context.Context, src string) (syncStats, error) {
	var ss syncStats
	cache := LoadStatCache(c.cacheFile)
	tree, err := BuildManifest(ctx, src, BuildOptions{Cache: cache})
	if err != nil {
		return ss, err
	}
	coord := HTTPSource(c.coordURL, c.client)
	mid, ust, err := Upload(ctx, &tree.Manifest, tree, coord, UploadOptions{})
	if err != nil {
		return ss, err
	}
	ss.upload = ust
	if err := cache.Save(c.cacheFile); err != nil {
		return ss, err
	}
	head := HTTPSource(c.urls[0], c.client)
	var peers []Source
	for i := 1; i < len(c.urls); i++ {
		peers = append(peers, HTTPSource(c.urls[i], c.client))
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		manifest = make(chan struct{})
	)
	node := func(i int) {
		defer wg.Done()
		var origins []Source
		var f *Fetcher
		if i == 0 {
			origins = []Source{coord}
		} else {
			<-manifest
			origins = []Source{head}
		}
		m, err := FetchManifest(ctx, mid, c.stores[i], origins...)
		if i == 0 {
			close(manifest)
		}
		if err == nil {
			f = &Fetcher{Store: c.stores[i], Origins: origins}
			if i > 0 {
				f.Peers, f.Self = peers, i-1
			}
			var plan *ApplyPlan
			if plan, err = PlanApply(&m, c.workdirs[i], c.applyOpts); err == nil {
				var fst FetchStats
				fst, err = f.Fetch(ctx, plan.Chunks())
				mu.Lock()
				if i > 0 {
					ss.fromOrigins += fst.FromOrigins
				}
				ss.fetched += fst.Fetched
				mu.Unlock()
			}
			if err == nil {
				_, err = plan.Apply(ctx, c.stores[i])
			}
		}
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = fmt.Errorf("node %d: %w", i, err)
			}
			mu.Unlock()
		}
	}
	for i := range c.stores {
		wg.Add(1)
		go node(i)
	}
	wg.Wait()
	return ss, firstErr
}

// rsyncTime times `rsync -a src/ dst/`.
func rsyncTime(b *testing.B, src, dst string) time.Duration {
	start := time.Now()
	out, err := exec.Command("rsync", "-a", src+"/", dst+"/").CombinedOutput()
	if err != nil {
		b.Fatalf("rsync: %v: %s", err, out)
	}
	return time.Since(start)
}

// rsync8Time times 8 parallel `rsync -a src/ dst<i>/`.
func rsync8Time(b *testing.B, src, dir string) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			out, err := exec.Command("rsync", "-a", src+"/", filepath.Join(dir, fmt.Sprint("rsync", i))+"/").CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("rsync: %v: %s", err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkSync8Nodes syncs the benchmark tree to 8 nodes over loopback
// HTTP and reports its time beside one `rsync -a` of the same tree to one
// directory (ratio "x-rsync") and beside 8 parallel rsyncs to 8
// directories ("x-8rsyncs"); "resync" changes one file and compares with
// an rsync no-op. Client egress is reported as a ratio to the tree.
func BenchmarkSync8Nodes(b *testing.B) {
	src := sharedBenchTree(b)
	ctx := context.Background()
	haveRsync := exec.Command("rsync", "--version").Run() == nil
	b.Run("fresh", func(b *testing.B) {
		var total, ref, ref8 time.Duration
		var ss syncStats
		var treeBytes int64
		for b.Loop() {
			b.StopTimer()
			tmp, err := os.MkdirTemp("", "sky-bench-")
			mustNo(b, err)
			c := newBenchCluster(b, tmp, 8)
			if haveRsync {
				ref += rsyncTime(b, src, filepath.Join(tmp, "rsync"))
				ref8 += rsync8Time(b, src, tmp)
			}
			b.StartTimer()
			start := time.Now()
			ss, err = c.sync(ctx, src)
			total += time.Since(start)
			mustNo(b, err)
			b.StopTimer()
			tree, _ := BuildManifest(ctx, src, BuildOptions{})
			treeBytes = tree.Stats.Bytes
			c.close()
			mustNo(b, os.RemoveAll(tmp))
			b.StartTimer()
		}
		n := float64(b.N)
		b.ReportMetric(total.Seconds()/n, "s/sync")
		if haveRsync {
			b.ReportMetric(ref.Seconds()/n, "s/rsync")
			b.ReportMetric(total.Seconds()/ref.Seconds(), "x-rsync")
			b.ReportMetric(ref8.Seconds()/n, "s/8rsyncs")
			b.ReportMetric(total.Seconds()/ref8.Seconds(), "x-8rsyncs")
		}
		b.ReportMetric(float64(ss.upload.Bytes+int64(ss.upload.ManifestBytes))/float64(treeBytes), "egress/tree")
		b.ReportMetric(float64(ss.fromOrigins), "head-sends-to-workers")
		b.ReportMetric(float64(ss.fetched), "chunks-fetched")
	})
	for _, skip := range []bool{false, true} {
		name := "resync"
		if skip {
			name = "resync-skipunchanged"
		}
		b.Run(name, func(b *testing.B) { benchResync(b, src, haveRsync, skip) })
	}
}

func benchResync(b *testing.B, src string, haveRsync, skip bool) {
	ctx := context.Background()
	tmp := b.TempDir()
	c := newBenchCluster(b, tmp, 8)
	c.applyOpts.SkipUnchanged = skip
	defer c.close()
	// A copy of the tree to change, with the same old times.
	work := filepath.Join(tmp, "src")
	out, err := exec.Command("cp", "-a", src, work).CombinedOutput()
	if err != nil {
		b.Fatalf("cp: %v: %s", err, out)
	}
	_, err = c.sync(ctx, work)
	mustNo(b, err)
	var rsyncNoop time.Duration
	rdst := filepath.Join(tmp, "rsync")
	if haveRsync {
		rsyncTime(b, work, rdst)
	}
	var total time.Duration
	var ss syncStats
	i := 0
	for b.Loop() {
		i++
		b.StopTimer()
		if haveRsync {
			rsyncNoop += rsyncTime(b, work, rdst)
		}
		p := filepath.Join(work, "pkg07", "mod3", "changed.py")
		mustNo(b, os.WriteFile(p, fmt.Appendf(nil, "version %d\n", i), 0o644))
		b.StartTimer()
		start := time.Now()
		ss, err = c.sync(ctx, work)
		total += time.Since(start)
		mustNo(b, err)
	}
	n := float64(b.N)
	b.ReportMetric(total.Seconds()/n, "s/sync")
	if haveRsync {
		b.ReportMetric(rsyncNoop.Seconds()/n, "s/rsync-noop")
		b.ReportMetric(total.Seconds()/rsyncNoop.Seconds(), "x-rsync-noop")
	}
	b.ReportMetric(float64(ss.upload.Chunks), "chunks-uploaded")
	b.ReportMetric(float64(ss.fetched), "chunks-fetched")
}
