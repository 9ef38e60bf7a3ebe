package coordinator

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/sky-coord/sky-coord/spec"
)

// sealedPrefix marks a secret value encrypted for the log.
const sealedPrefix = "sealed:v1:"

// secretsKey derives the key that seals task secrets from the
// coordinator's secret, so secret values never sit in the Raft log or a
// snapshot in plain text.
func (s *Server) secretsKey() []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("task-secrets"))
	return m.Sum(nil)
}

// sealSecrets returns a copy of t whose secret values are encrypted.
func (s *Server) sealSecrets(t *spec.Task) (*spec.Task, error) {
	return s.mapSecrets(t, func(aead cipher.AEAD, k, v string) (string, error) {
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return "", err
		}
		sealed := aead.Seal(nonce, nonce, []byte(v), []byte(k))
		return sealedPrefix + base64.StdEncoding.EncodeToString(sealed), nil
	})
}

// openSecrets returns a copy of t with its secret values decrypted.
func (s *Server) openSecrets(t *spec.Task) (*spec.Task, error) {
	return s.mapSecrets(t, func(aead cipher.AEAD, k, v string) (string, error) {
		enc, ok := strings.CutPrefix(v, sealedPrefix)
		if !ok {
			return v, nil
		}
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(raw) < aead.NonceSize() {
			return "", fmt.Errorf("secret %s: damaged in the coordinator log", k)
		}
		plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(k))
		if err != nil {
			return "", fmt.Errorf("secret %s: cannot be decrypted with this coordinator's key (%s/agent-secret changed?)", k, s.cfg.DataDir)
		}
		return string(plain), nil
	})
}

// mapSecrets returns a copy of t with fn applied to each secret value.
func (s *Server) mapSecrets(t *spec.Task, fn func(aead cipher.AEAD, k, v string) (string, error)) (*spec.Task, error) {
	if t == nil || len(t.Secrets) == 0 {
		return t, nil
	}
	aead, err := newAEAD(s.secretsKey())
	if err != nil {
		return nil, err
	}
	cp := *t
	cp.Secrets = make(map[string]string, len(t.Secrets))
	for k, v := range t.Secrets {
		if cp.Secrets[k], err = fn(aead, k, v); err != nil {
			return nil, err
		}
	}
	return &cp, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
