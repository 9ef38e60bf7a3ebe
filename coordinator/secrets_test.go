package coordinator

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sky-coord/sky-coord/spec"
)

func TestSecretsSealAndOpen(t *testing.T) {
	s := &Server{secret: []byte("0123456789abcdef0123456789abcdef")}
	task := &spec.Task{Run: "true", Secrets: map[string]string{"TOKEN": "hunter2", "EMPTY": ""}}
	sealed, err := s.sealSecrets(task)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range sealed.Secrets {
		if !strings.HasPrefix(v, sealedPrefix) || strings.Contains(v, "hunter2") {
			t.Errorf("sealed %s = %q", k, v)
		}
	}
	if task.Secrets["TOKEN"] != "hunter2" {
		t.Errorf("sealing changed the caller's task")
	}
	opened, err := s.openSecrets(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(task.Secrets, opened.Secrets); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	other := &Server{secret: []byte("another-secret-another-secret-xx")}
	if _, err := other.openSecrets(sealed); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("opening with another key: %v, want an error without the value", err)
	}
}
