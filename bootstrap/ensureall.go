package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Target is one node for EnsureAll: how to reach it and what to run.
type Target struct {
	// Connect opens the node's transport; EnsureAll closes it.
	Connect func(ctx context.Context) (Transport, error)
	Node    Node
}

// maxParallel bounds how many nodes EnsureAll works on at once. Each node
// is one connection, so no single sshd sees more than one.
const maxParallel = 64

// EnsureAll runs Ensure on every target in parallel. Results are in the
// targets' order; the error joins every node's failure, each naming its
// node and stage.
func EnsureAll(ctx context.Context, targets []Target) ([]Result, error) {
	res := make([]Result, len(targets))
	errs := make([]error, len(targets))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("%s: %w", tg.Node.Name, ctx.Err())
				return
			}
			defer func() { <-sem }()
			t, err := tg.Connect(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			defer t.Close()
			res[i], errs[i] = Ensure(ctx, t, tg.Node)
		}()
	}
	wg.Wait()
	return res, errors.Join(errs...)
}
