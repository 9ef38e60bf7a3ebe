package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options are the command line's overrides of a task file's envs and
// secrets. Values are already resolved (see ParseEnvFlag, ParseDotenv).
// Precedence, as in SkyPilot: envs take --env over --env-file over the
// file (keys only in the overrides are added); secrets take --secret over
// --secret-file over --env-file (for the secrets the file declares) over
// the file.
type Options struct {
	Env        map[string]string // --env values, highest precedence
	EnvFile    map[string]string // parsed --env-file
	Secrets    map[string]string // --secret
	SecretFile map[string]string // --secret-file
	// AllowUnset accepts envs and secrets that are still null after the
	// overrides: they are listed in Task.UnsetEnvs/UnsetSecrets instead of
	// being errors. For checking a file on its own (a file with
	// `HF_TOKEN: null` is valid; launching it needs --env/--secret).
	AllowUnset bool
}

// File is a parsed task file: one task, or a pipeline / job group of
// several (a multi-document file with an optional header document).
type File struct {
	Name string `json:"name,omitempty"`
	// Execution is "" (a single task or a pipeline without header
	// setting it), "serial" (a pipeline) or "parallel" (a job group).
	Execution string `json:"execution,omitempty"`
	// PrimaryTasks and TerminationDelaySeconds are job-group settings.
	PrimaryTasks            []string `json:"primary_tasks,omitempty"`
	TerminationDelaySeconds int      `json:"termination_delay_seconds,omitempty"`
	Tasks                   []*Task  `json:"tasks"`
	// Warnings are findings that do not make the file invalid: values
	// left to fill in (with Options.AllowUnset) and settings SkyPilot's
	// own examples use although its stricter checks would refuse them.
	Warnings ErrorList `json:"-"`
}

// headerKeys are the fields a pipeline/job-group header document may have.
var headerKeys = []string{"name", "execution", "primary_tasks", "termination_delay"}

// Parse reads a task file. The error, when not nil, is an ErrorList with
// every problem found, each with its file, line and column.
func Parse(filename string, data []byte, opts Options) (*File, error) {
	d := newDecoder(filename)
	d.allowUnset = opts.AllowUnset
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, ErrorList{syntaxError(filename, data, err)}
	}
	f := &File{}
	if len(docs) == 1 && isRayClusterConfig(docs[0]) {
		msg := "this is a Ray cluster config (for `ray up`), not a SkyPilot task file; there is no task to run"
		if !opts.AllowUnset {
			d.errorf(d.deref(docs[0]), "", "%s", msg)
			return nil, d.errs
		}
		d.warnf(d.deref(docs[0]), "", "%s; not validated", msg)
		f.Warnings = d.warnings
		return f, nil
	}
	var taskDocs []*yaml.Node
	for _, doc := range docs {
		if !d.isNull(doc) {
			taskDocs = append(taskDocs, doc)
		}
	}
	if len(taskDocs) > 0 && isHeader(d, taskDocs[0], len(taskDocs)) {
		d.header(taskDocs[0], f)
		taskDocs = taskDocs[1:]
		if len(taskDocs) == 0 {
			if f.Execution == "" && f.PrimaryTasks == nil && f.TerminationDelaySeconds == 0 {
				// `name: x` alone is a task named x.
				f.Tasks = []*Task{{Name: f.Name, NumNodes: 1, Resources: Resources{DiskSize: DefaultDiskSizeGB}}}
			} else {
				d.errorf(d.deref(docs[0]), "", "the file has a header document but no task after it; add a task document after ---")
			}
		}
	}
	for _, doc := range taskDocs {
		if t := d.task(doc, opts); t != nil {
			f.Tasks = append(f.Tasks, t)
		}
	}
	if len(docs) == 0 || (len(taskDocs) == 0 && f.Tasks == nil && len(d.errs) == 0) {
		// An empty file is a task with every default (SkyPilot: `{}`).
		f.Tasks = []*Task{d.task(nil, opts)}
	}
	if len(taskDocs) == 1 && f.Name == "" && len(f.Tasks) == 1 {
		f.Name = f.Tasks[0].Name
	}
	d.checkPrimaryTasks(f)
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	f.Warnings = d.warnings.sorted()
	return f, nil
}

// splitDocuments parses every YAML document of data. yaml.v3 is a third
// party parser fed untrusted bytes: a panic in it is turned into an error.
func splitDocuments(data []byte) (docs []*yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			docs, err = nil, fmt.Errorf("yaml: cannot parse this file (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return nil, err
		}
		docs = append(docs, &n)
	}
}

var reYAMLLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 error into an Error. yaml.v3 reports the
// line where the construct around the problem starts (often the line
// before it), so the problem's line is found as the line after the
// longest prefix of the file that still parses.
func syntaxError(file string, data []byte, err error) *Error {
	msg := err.Error()
	e := &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
	if m := reYAMLLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML: " + m[2]
	}
	if len(data) > maxSyntaxScanBytes {
		return e
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for k := len(lines) - 1; k >= 0 && k >= len(lines)-maxSyntaxScanLines; k-- {
		if _, perr := splitDocuments(bytes.Join(lines[:k], nil)); perr == nil {
			if k+1 >= e.Line {
				e.Line = k + 1
				if t := bytes.TrimLeft(lines[k], " "); len(t) > 0 && t[0] != '\n' {
					e.Column = len(lines[k]) - len(t) + 1
				}
			}
			break
		}
	}
	return e
}

// maxSyntaxScanLines and maxSyntaxScanBytes bound the prefix scan of
// syntaxError (one parse per line, from the end): an error further than
// that from the end of the file, or in a larger file, gets yaml.v3's line.
const (
	maxSyntaxScanLines = 200
	maxSyntaxScanBytes = 64 << 10
)

// isHeader reports whether the first document is a pipeline header: only
// header fields, and either more documents follow or it has more than a
// name.
func isHeader(d *decoder, doc *yaml.Node, ndocs int) bool {
	dn := d.deref(doc)
	if dn == nil || dn.Kind != yaml.MappingNode || len(dn.Content) == 0 {
		return false
	}
	set := map[string]bool{}
	for _, k := range headerKeys {
		set[k] = true
	}
	onlyName := true
	for i := 0; i+1 < len(dn.Content); i += 2 {
		_, s := d.kindOf(dn.Content[i])
		if !set[s.str] {
			return false
		}
		if s.str != "name" {
			onlyName = false
		}
	}
	return ndocs > 1 || !onlyName
}

var reDuration = regexp.MustCompile(`^([0-9]+)([smhdwSMHDW]?)$`)

func (d *decoder) header(doc *yaml.Node, f *File) {
	o, ok := d.object(doc, "", headerKeys)
	if !ok {
		return
	}
	if n, ok := o.get("name"); ok {
		if s, ok := d.str(n, "name"); ok {
			d.checkName(n, "name", s)
			f.Name = s
		}
	}
	if n, ok := o.get("execution"); ok {
		if s, ok := d.str(n, "execution"); ok {
			if s != "serial" && s != "parallel" {
				d.errorf(d.deref(n), "execution", "must be %s, got %q", quoteList([]string{"serial", "parallel"}), s)
			}
			f.Execution = s
		}
	}
	if n, ok := o.get("primary_tasks"); ok {
		if items, ok := d.seq(n, "primary_tasks"); ok {
			f.PrimaryTasks = []string{}
			for i, it := range items {
				if s, ok := d.str(it, index("primary_tasks", i)); ok {
					f.PrimaryTasks = append(f.PrimaryTasks, s)
					d.primary = append(d.primary, pair{key: s, v: it})
				}
			}
		}
	}
	if n, ok := o.get("termination_delay"); ok {
		f.TerminationDelaySeconds = d.durationSeconds(n, "termination_delay")
	}
	if f.Execution != "parallel" && (o.has("primary_tasks") || o.has("termination_delay")) {
		d.errorf(o.keyNode("execution"), "execution", "primary_tasks and termination_delay are job-group settings; they need execution: parallel")
	}
}

// durationSeconds reads seconds as an integer or a string like "30s",
// "5m", "1h".
func (d *decoder) durationSeconds(n *yaml.Node, path string) int {
	k, s := d.kindOf(n)
	if k == kInt {
		v, _ := d.integer(n, path)
		if v < 0 {
			d.errorf(d.deref(n), path, "must not be negative")
		}
		return v
	}
	m := reDuration.FindStringSubmatch(s.str)
	if k != kStr || m == nil {
		d.errorf(d.deref(n), path, "must be seconds or a duration like \"30s\", \"5m\", \"1h\", got %s", d.describe(n))
		return 0
	}
	v, err := strconv.Atoi(m[1])
	if err != nil || v > 1<<30 {
		d.errorf(d.deref(n), path, "%s is out of range", s.str)
		return 0
	}
	mult := map[string]int{"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
	return v * mult[lower(m[2])]
}

func (d *decoder) checkPrimaryTasks(f *File) {
	names := map[string]bool{}
	var list []string
	for _, t := range f.Tasks {
		names[t.Name] = true
		list = append(list, t.Name)
	}
	for i, p := range d.primary {
		if !names[p.key] {
			d.errorf(d.deref(p.v), index("primary_tasks", i), "%q is not the name of a task in this file (tasks: %s)", p.key, quoteList(list))
		}
	}
}

// isRayClusterConfig recognizes a Ray autoscaler cluster config (the file
// `ray up` takes), which sits among SkyPilot's own test files.
// It reads the top-level keys only, without charging the node budget.
func isRayClusterConfig(doc *yaml.Node) bool {
	n := doc
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return false
	}
	keys := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys[n.Content[i].Value] = true
	}
	return keys["cluster_name"] && keys["provider"] &&
		(keys["available_node_types"] || keys["head_node_type"] || keys["max_workers"])
}
