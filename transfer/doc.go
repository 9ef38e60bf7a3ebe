// Package transfer moves a workdir or file mount from the client to the
// nodes of a cluster: content-defined chunks named by their BLAKE3 hash, a
// manifest of the tree, stores that hold chunks, a peer-to-peer fetcher,
// and an atomic apply that never deletes what the job wrote.
//
// One sync, and who does what:
//
//	client                 coordinator            head (rank 0)            workers (rank 1..N-1)
//	──────                 ───────────            ─────────────            ─────────────────────
//	BuildManifest(dir)
//	  walk (git ignore
//	  rules), chunk, hash;
//	  StatCache skips
//	  unchanged files
//	Upload ──chunks it lacks──► DiskStore
//	       ──manifest last───► (ChunkHandler,
//	                             AllowPut)
//	                        manifest id ─────────► FetchManifest
//	                                               PlanApply → Chunks
//	                                               Fetcher{Origins:
//	                                                 coordinator} ◄─────── FetchManifest(head)
//	                                               its DiskStore makes     PlanApply → Chunks
//	                                               early asks wait         Fetcher{Origins: head,
//	                                                                         Peers: workers}:
//	                                                                       each chunk from its owner
//	                                                                       peer, the owner from the head
//	                                               plan.Apply(store)       plan.Apply(store)
//
// So the client sends each chunk once, the coordinator each chunk once
// (to the head), the head each chunk about once (to its owner worker).
package transfer
