package spec

import (
	"fmt"
	"regexp"
	"strings"
)

// reEnvName is a valid environment variable name.
var reEnvName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// reVar is SkyPilot's pattern for $VAR and ${VAR} (sky/task.py).
var reVar = regexp.MustCompile(`\$\{?\b([a-zA-Z_][a-zA-Z0-9_]*)\b\}?`)

// maxSubstituted bounds a string after substitution, so that a file
// cannot make a value of gigabytes out of a few kilobytes.
const maxSubstituted = 1 << 20

// substitute replaces $VAR and ${VAR} with vars[VAR]; unknown variables
// stay as they are, and there is no ${VAR:-default}. ok is false (and s
// is returned unchanged) when the result would exceed maxSubstituted.
func substitute(s string, vars map[string]string) (string, bool) {
	if !strings.Contains(s, "$") {
		return s, true
	}
	var b strings.Builder
	last := 0
	for _, m := range reVar.FindAllStringSubmatchIndex(s, -1) {
		v, ok := vars[s[m[2]:m[3]]]
		if !ok {
			continue
		}
		if b.Len()+(m[0]-last)+len(v) > maxSubstituted {
			return s, false
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(v)
		last = m[1]
	}
	if b.Len()+len(s)-last > maxSubstituted {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}

// ParseEnvFlag parses one --env (or --secret) argument: KEY=VALUE, or
// KEY alone to take the value from the caller's environment through
// lookup (os.LookupEnv in the CLI).
func ParseEnvFlag(arg string, lookup func(string) (string, bool)) (key, value string, err error) {
	key, value, hasValue := strings.Cut(arg, "=")
	if !reEnvName.MatchString(key) {
		return "", "", fmt.Errorf("%q: %q is not a valid variable name (letters, digits and _, not starting with a digit); write NAME=VALUE", arg, key)
	}
	if hasValue {
		return key, value, nil
	}
	if lookup != nil {
		if v, ok := lookup(key); ok {
			return key, v, nil
		}
	}
	return "", "", fmt.Errorf("%s is not set in your environment; export it, or write %s=VALUE", key, key)
}

// mergeOverrides applies the command line to a task's envs and secrets:
// --env over --env-file over the file for envs; --secret over
// --secret-file over --env-file (only for secrets the file declares) over
// the file for secrets. A null (unset) value is represented by absence
// from the returned maps and presence in the null sets.
func mergeOverrides(envs, secrets map[string]*string, opts Options) {
	for _, src := range []map[string]string{opts.EnvFile, opts.Env} {
		for k, v := range src {
			envs[k] = ptr(v)
		}
	}
	for k := range secrets {
		if v, ok := opts.EnvFile[k]; ok && !strings.HasPrefix(k, "secrets:") {
			secrets[k] = ptr(v)
		}
	}
	for _, src := range []map[string]string{opts.SecretFile, opts.Secrets} {
		for k, v := range src {
			secrets[k] = ptr(v)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// dockerLoginEnvs must be set together (sky/skylet/constants.py).
var dockerLoginEnvs = []string{"SKYPILOT_DOCKER_USERNAME", "SKYPILOT_DOCKER_PASSWORD", "SKYPILOT_DOCKER_SERVER"}

func lower(s string) string { return strings.ToLower(s) }
