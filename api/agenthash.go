package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Hash is AgentHealth.ConfigHash for c: the hex SHA-256 of c's canonical
// JSON (encoding/json of the struct, fields in declaration order). A
// bootstrapper compares it with a running agent's to know whether the
// agent runs the config it wrote.
func (c AgentConfig) Hash() string {
	b, err := json.Marshal(c)
	if err != nil {
		// AgentConfig holds only strings and ints: Marshal cannot fail.
		panic("api: marshal AgentConfig: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
