// Package providertest is the contract every providers.Provider must pass:
// idempotent launch per (cluster, node index), describe, stop, start and
// terminate, with nothing left behind. Each provider's tests call Run.
package providertest

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/providers"
)

// Run checks p against the Provider contract. p must start with no
// clusters named "contract-a" or "contract-b".
func Run(t *testing.T, p providers.Provider) {
	ctx := context.Background()
	ids := func(in []providers.Instance) []string {
		var out []string
		for _, i := range in {
			out = append(out, i.ID)
		}
		return out
	}
	t.Cleanup(func() {
		_ = p.Terminate(ctx, "contract-a")
		_ = p.Terminate(ctx, "contract-b")
	})

	t.Run("launch is idempotent per node index", func(t *testing.T) {
		first, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "contract-a", NumNodes: 2, Token: "contract-a-1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(first) != 2 || first[0].Index != 0 || first[1].Index != 1 {
			t.Fatalf("launch of 2 nodes = %+v, want indexes 0 and 1", first)
		}
		again, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "contract-a", NumNodes: 2, Token: "contract-a-1"})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ids(first), ids(again)); diff != "" {
			t.Errorf("a repeated launch created instances (-first +again):\n%s", diff)
		}
		grown, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "contract-a", NumNodes: 3, Token: "contract-a-1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(grown) != 3 || grown[0].ID != first[0].ID || grown[1].ID != first[1].ID {
			t.Errorf("growing to 3 nodes replaced existing ones: %v then %v", ids(first), ids(grown))
		}
		desc, err := p.Describe(ctx, "contract-a")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ids(grown), ids(desc)); diff != "" {
			t.Errorf("describe (-launched +described):\n%s", diff)
		}
	})

	t.Run("clusters are separate", func(t *testing.T) {
		b, err := p.Launch(ctx, providers.LaunchRequest{Cluster: "contract-b", NumNodes: 1, Token: "contract-b-1"})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := p.Describe(ctx, "contract-a")
		for _, in := range a {
			if in.ID == b[0].ID || (in.IP != "" && in.IP == b[0].IP) {
				t.Errorf("cluster b's node %+v collides with cluster a's %+v", b[0], in)
			}
		}
	})

	t.Run("stop keeps instances, start brings them back", func(t *testing.T) {
		before, _ := p.Describe(ctx, "contract-a")
		if err := p.Stop(ctx, "contract-a"); err != nil {
			t.Fatal(err)
		}
		stopped, _ := p.Describe(ctx, "contract-a")
		for _, in := range stopped {
			if in.State != providers.StateStopped {
				t.Errorf("after stop, %s is %s", in.ID, in.State)
			}
		}
		started, err := p.Start(ctx, "contract-a")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ids(before), ids(started)); diff != "" {
			t.Errorf("start returned other instances (-before +started):\n%s", diff)
		}
		for _, in := range started {
			if in.State != providers.StateRunning {
				t.Errorf("after start, %s is %s", in.ID, in.State)
			}
		}
	})

	t.Run("terminate leaves nothing and is idempotent", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if err := p.Terminate(ctx, "contract-a"); err != nil {
				t.Fatalf("terminate #%d: %v", i+1, err)
			}
		}
		left, err := p.Describe(ctx, "contract-a")
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range left {
			if in.State != providers.StateTerminated {
				t.Errorf("after terminate, %s is %s", in.ID, in.State)
			}
		}
		if b, _ := p.Describe(ctx, "contract-b"); len(b) != 1 {
			t.Errorf("terminating cluster a touched cluster b: %+v", b)
		}
	})
}
