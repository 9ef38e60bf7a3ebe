package main

import (
	"strings"
	"testing"
)

// Without sky-coord-server beside it, `server` says what is missing and
// how to get it, and does not start anything.
func TestServerNeedsItsBinary(t *testing.T) {
	t.Setenv("SKY_COORD_SERVER_BIN", "")
	err := execServer([]string{"--bind", "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "sky-coord-server binary is not beside") || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("execServer = %v, want an error naming the missing binary and `make build`", err)
	}
}
