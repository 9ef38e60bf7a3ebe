package agent

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sky-coord/sky-coord/api"
)

// taskScript wraps a user's setup or run commands the way SkyPilot's
// log_lib.make_task_bash_script does: bashrc (when there is one), conda's
// shell functions (when conda is there), unbuffered Python, the workdir,
// the environment as export lines (sorted), then the commands.
//
// SkyPilot sources `$(conda info --base)/etc/profile.d/conda.sh`, which
// without conda is /etc/profile.d/conda.sh. So does this script, but it
// asks conda only when there is one: the command substitution forks a
// subshell that fails to find it, which on a VM with costly page faults
// took 9 of the script's 13 ms before the user's first command.
func taskScript(commands string, env map[string]string) (string, error) {
	var b strings.Builder
	b.WriteString(`#!/bin/bash
if [ -f ~/.bashrc ]; then source ~/.bashrc; fi
set -a
if command -v conda > /dev/null 2>&1; then __sky_conda="$(conda info --base 2> /dev/null)"; else __sky_conda=; fi
. "$__sky_conda/etc/profile.d/conda.sh" > /dev/null 2>&1 || true
unset __sky_conda
set +a
export PYTHONUNBUFFERED=1
cd ~/sky_workdir
`)
	for _, k := range sortedKeys(env) {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("environment variable name %q is not valid (letters, digits, _; not starting with a digit)", k)
		}
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	b.WriteString(commands)
	b.WriteString("\n")
	return b.String(), nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// shellQuote quotes s for bash as Python's shlex.quote does.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// shellSafe is shlex's set of characters that need no quoting (ASCII).
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// runEnv is the environment of rank's run process (semantics §1): the
// job's envs, then SkyPilot's variables, which win over them.
func runEnv(job api.AgentJob, rank int) map[string]string {
	env := common(job)
	ips := make([]string, 0, job.NumNodes)
	for _, n := range job.Nodes[:job.NumNodes] {
		ips = append(ips, n.IP)
	}
	env["SKYPILOT_NODE_RANK"] = strconv.Itoa(rank)
	env["SKYPILOT_NODE_IPS"] = strings.Join(ips, "\n")
	env["SKYPILOT_NUM_GPUS_PER_NODE"] = strconv.Itoa(job.NumGPUsPerNode)
	env["SKYPILOT_INTERNAL_JOB_ID"] = strconv.FormatInt(job.JobID, 10)
	return env
}

// setupEnv is the environment of the setup process on the node at index
// i of the cluster's stable order.
func setupEnv(job api.AgentJob, i int) map[string]string {
	env := common(job)
	ips := make([]string, 0, len(job.Nodes))
	for _, n := range job.Nodes {
		ips = append(ips, n.IP)
	}
	env["SKYPILOT_SETUP_NODE_RANK"] = strconv.Itoa(i)
	env["SKYPILOT_SETUP_NODE_IPS"] = strings.Join(ips, "\n")
	env["SKYPILOT_SETUP_NUM_GPUS_PER_NODE"] = strconv.Itoa(job.NumGPUsPerNode)
	return env
}

// common holds what setup and run share.
func common(job api.AgentJob) map[string]string {
	env := make(map[string]string, len(job.Envs)+8)
	for k, v := range job.Envs {
		env[k] = v
	}
	env["SKYPILOT_NUM_NODES"] = strconv.Itoa(job.NumNodes)
	env["SKYPILOT_TASK_ID"] = job.TaskID
	env["SKYPILOT_CLUSTER_INFO"] = job.ClusterInfo
	env["SKYPILOT_USER"] = job.User
	return env
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
