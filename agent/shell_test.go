package agent

import (
	"bytes"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sky-coord/sky-coord/api"
	"github.com/sky-coord/sky-coord/procscan"
	"github.com/sky-coord/sky-coord/ptystream"
)

// openShell starts a shell session on agent 0.
func openShell(t *testing.T, c *testCluster, q url.Values) *ptystream.Conn {
	t.Helper()
	ta := c.agents[0]
	conn, err := net.Dial("tcp", ta.cfg.Bind)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, ta.url+"/v1/shell?"+q.Encode(), nil)
	api.SetToken(req, c.token)
	s, err := ptystream.Dial(conn, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readUntil collects output frames until want appears (or an exit frame).
func readUntil(t *testing.T, s *ptystream.Conn, want string) (string, *int) {
	t.Helper()
	var out bytes.Buffer
	s.SetReadDeadline(time.Now().Add(15 * time.Second))
	for !strings.Contains(out.String(), want) {
		k, p, err := ptystream.Read(s)
		if err != nil {
			t.Fatalf("waiting for %q: %v; output so far %q", want, err, out.String())
		}
		switch k {
		case ptystream.Data:
			out.Write(p)
		case ptystream.Exit:
			code, _ := ptystream.ParseExit(p)
			return out.String(), &code
		}
	}
	return out.String(), nil
}

func TestShellFollowsResizesAndReportsTheExitCode(t *testing.T) {
	c := newCluster(t, 1)
	s := openShell(t, c, url.Values{"rows": {"30"}, "cols": {"100"}})
	send := func(k ptystream.Kind, p []byte) {
		if err := ptystream.Write(s, k, p); err != nil {
			t.Fatal(err)
		}
	}
	send(ptystream.Data, []byte("echo size=$(stty size) home=$HOME\n"))
	readUntil(t, s, "size=30 100 home="+c.agents[0].cfg.Home)
	send(ptystream.Resize, ptystream.ResizePayload(40, 120))
	send(ptystream.Data, []byte("echo now=$(stty size)\n"))
	readUntil(t, s, "now=40 120")
	send(ptystream.Data, []byte("exit 5\n"))
	_, code := readUntil(t, s, "\x00never")
	if code == nil || *code != 5 {
		t.Fatalf("exit code %v, want 5", code)
	}
}

func TestShellCommandAndHangUp(t *testing.T) {
	c := newCluster(t, 1)
	s := openShell(t, c, url.Values{"cmd": {"echo ran $((40+2)); exit 0"}})
	out, code := readUntil(t, s, "\x00never")
	if code == nil || *code != 0 || !strings.Contains(out, "ran 42") {
		t.Fatalf("command: exit %v, output %q", code, out)
	}

	// A client that goes away takes its processes with it.
	marker := c.agents[0].cfg.Marker
	s2 := openShell(t, c, url.Values{"cmd": {"sleep 300; echo never"}})
	waitFor(t, "the shell's sleep", func() bool { return len(procscan.WithEnv("SKY_COORD_NODE="+marker)) > 0 })
	s2.Close()
	waitFor(t, "the shell's processes to end", func() bool { return len(procscan.WithEnv("SKY_COORD_NODE="+marker)) == 0 })
}

func TestShellNeedsTheToken(t *testing.T) {
	c := newCluster(t, 1)
	conn, err := net.Dial("tcp", c.agents[0].cfg.Bind)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest(http.MethodGet, c.agents[0].url+"/v1/shell", nil)
	req.Header.Set("Authorization", "Bearer wrong")
	if _, err := ptystream.Dial(conn, req); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
}
