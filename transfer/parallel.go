package transfer

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// eachParallel calls do for every index in [0, n) on up to workers
// goroutines, each taking the next index when it is done with one. The
// first error cancels the context the others run under, and is returned.
func eachParallel(ctx context.Context, workers, n int, do func(ctx context.Context, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for range min(workers, n) {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := do(ctx, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}
