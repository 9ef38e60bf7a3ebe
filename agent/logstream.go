package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// logPoll is how often a followed log is checked for new output.
const logPoll = 100 * time.Millisecond

// handleLog streams a job's run.log: the last tail lines (all when tail
// is absent or not positive), then with follow=1 what is appended until
// the job is terminal and the file drained. A job the agent does not
// know (it restarted) is found by its log directory, "<id>-<name>";
// what exists is sent and the stream ends.
func (a *Agent) handleLog(w http.ResponseWriter, r *http.Request) {
	id, err := jobID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	tail := 0
	if s := q.Get("tail"); s != "" {
		if tail, err = strconv.Atoi(s); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("tail %q is not a number", s))
			return
		}
	}
	var done <-chan struct{}
	var path string
	if j := a.lookupJob(id); j != nil {
		path, done = a.runLogPath(j.spec.LogDir), j.done
	} else if path, err = a.findRunLog(id); err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("job %d: %w", id, err))
		return
	}
	defer f.Close() // read only
	if tail > 0 {
		off, err := tailOffset(f, tail)
		if err == nil {
			_, err = f.Seek(off, io.SeekStart)
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Errorf("job %d: tail %s: %w", id, path, err))
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	drain := func() error {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := drain(); err != nil || !follow || done == nil {
		return
	}
	t := time.NewTicker(logPoll)
	defer t.Stop()
	for {
		select {
		case <-done:
			_ = drain() // the last of it; the client may be gone
			return
		case <-r.Context().Done():
			return
		case <-t.C:
			if err := drain(); err != nil {
				return
			}
		}
	}
}

// findRunLog finds the run.log of a job this agent has no record of.
func (a *Agent) findRunLog(id int64) (string, error) {
	base := filepath.Join(a.cfg.Home, "sky_logs")
	s := strconv.FormatInt(id, 10)
	if p := filepath.Join(base, s, "run.log"); fileExists(p) {
		return p, nil
	}
	matches, err := filepath.Glob(filepath.Join(base, s+"-*", "run.log"))
	if err != nil || len(matches) == 0 {
		return "", fmt.Errorf("job %d: no run.log under %s", id, base)
	}
	return matches[0], nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}

// tailOffset is where the last n lines of f begin (a last line without a
// newline counts as a line).
func tailOffset(f *os.File, n int) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := fi.Size()
	if end == 0 {
		return 0, nil
	}
	buf := make([]byte, 32<<10)
	// A newline that ends the file closes the last line; it is not a
	// line boundary to count.
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, end-1); err != nil {
		return 0, err
	}
	pos := end
	if last[0] == '\n' {
		pos--
	}
	seen := 0
	for pos > 0 {
		size := min(int64(len(buf)), pos)
		chunk := buf[:size]
		if _, err := f.ReadAt(chunk, pos-size); err != nil {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' {
				continue
			}
			if seen++; seen == n {
				return pos - size + int64(i) + 1, nil
			}
		}
		pos -= size
	}
	return 0, nil
}
