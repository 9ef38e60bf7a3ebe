package api

import (
	"io"
	"net/http"
	"strings"
)

// Every sky-coord API, the coordinator's and the agents', takes its token
// as "Authorization: Bearer TOKEN".

// SetToken authenticates req with token.
func SetToken(req *http.Request, token string) {
	req.Header.Set("Authorization", "Bearer "+token)
}

// RequestToken returns the token r carries; "" when it carries none.
func RequestToken(r *http.Request) string {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return token
}

// TokenTransport adds Token to every request before Next sends it.
type TokenTransport struct {
	Token string
	Next  http.RoundTripper
}

func (t TokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	SetToken(r, t.Token)
	return t.Next.RoundTrip(r)
}

// CloseIdleConnections closes Next's idle connections, where it keeps
// any (http.Client.CloseIdleConnections reaches them through this).
func (t TokenTransport) CloseIdleConnections() {
	if c, ok := t.Next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// CloseBody reads what is left of a response body, up to 64 KiB, and
// closes it. A client's connection goes back to its pool for the next
// request only when the body was read to its end; closed before that, the
// connection is closed too, and the next request to that host dials anew.
func CloseBody(body io.ReadCloser) error {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10)) // what is left is of no use; Close reports a broken stream
	return body.Close()
}
