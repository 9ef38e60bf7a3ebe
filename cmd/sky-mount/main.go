// Command sky-mount puts one bucket in place for the agent: it links the
// object-store SDKs so the agent does not have to (the agent stays small
// and fetches this binary from the coordinator the first time a job
// mounts a bucket).
//
//	sky-mount serve SOCKET   read a MountSpec (JSON) on stdin, mount it, and
//	                         answer on the unix socket until told to unmount
//	                         or signalled (SIGTERM: flush for a while, then
//	                         unmount; pending uploads stay journaled)
//
// The socket speaks HTTP: GET /pending → UploadProgress, POST /flush
// (waits until MOUNT_CACHED writes are in the bucket), POST /unmount.
// COPY mode mounts nothing: serve copies, then exits 0 (or 1 with the
// error on stderr).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sky-coord/sky-coord/mounts"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: sky-mount serve SOCKET  (a MountSpec as JSON on stdin)")
		os.Exit(2)
	}
	if err := serve(os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "sky-mount:", err)
		os.Exit(1)
	}
}

// Spec is what the agent sends on stdin.
type Spec struct {
	Dst        string `json:"dst"`
	URL        string `json:"url"`
	Mode       string `json:"mode"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	CacheDir   string `json:"cache_dir,omitempty"`
	CacheBytes int64  `json:"cache_bytes,omitempty"`
	Transfers  int    `json:"transfers,omitempty"`
}

func serve(socket string) error {
	var sp Spec
	if err := json.NewDecoder(os.Stdin).Decode(&sp); err != nil {
		return fmt.Errorf("read the mount spec on stdin: %w", err)
	}
	mode, err := mounts.ParseMode(sp.Mode)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	m, err := mounts.Mount(ctx, mounts.MountSpec{Dst: sp.Dst, URL: sp.URL, Mode: mode, ReadOnly: sp.ReadOnly,
		CacheDir: sp.CacheDir, CacheBytes: sp.CacheBytes, Transfers: sp.Transfers, Logger: log})
	if err != nil {
		return err
	}
	if mode == mounts.ModeCopy {
		return nil
	}
	_ = os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		uctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = m.Unmount(uctx)
		return err
	}
	_ = os.Chmod(socket, 0o600)
	done := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pending", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(m.Pending())
	})
	mux.HandleFunc("POST /flush", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Flush(r.Context(), nil); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(m.Pending())
	})
	mux.HandleFunc("POST /unmount", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		select {
		case <-done:
		default:
			close(done)
		}
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println("ready") // the agent waits for this line
	select {
	case <-ctx.Done():
	case <-done:
	}
	uctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = m.Unmount(uctx)
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	_ = os.Remove(socket)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
