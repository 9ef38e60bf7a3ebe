package providers

import (
	"os"
	"path/filepath"
)

// FindCredentials looks, without using them, for a cloud's credentials
// where its SDK's standard chain would find them. It says where it looked
// or what it found, for `sky-coord check`.
func FindCredentials(cloud string) (found bool, detail string) {
	home, _ := os.UserHomeDir()
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	switch cloud {
	case "aws":
		if os.Getenv("AWS_ACCESS_KEY_ID") != "" && os.Getenv("AWS_SECRET_ACCESS_KEY") != "" {
			return true, "AWS_ACCESS_KEY_ID in the environment"
		}
		if os.Getenv("AWS_PROFILE") != "" || os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "" {
			return true, "AWS_PROFILE or a web identity in the environment"
		}
		for _, p := range []string{os.Getenv("AWS_SHARED_CREDENTIALS_FILE"), filepath.Join(home, ".aws", "credentials")} {
			if p != "" && exists(p) {
				return true, p
			}
		}
		return false, "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`"
	case "gcp":
		if p := os.Getenv("GOOGLE_APPLICATION_CREDENTIALS"); p != "" && exists(p) {
			return true, p
		}
		if p := filepath.Join(home, ".config", "gcloud", "application_default_credentials.json"); exists(p) {
			return true, p
		}
		return false, "no GCP credentials: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS"
	}
	return false, "no credential check for " + cloud
}
