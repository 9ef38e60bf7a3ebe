package spec

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"

	"gopkg.in/yaml.v3"
)

// redacted replaces secret values in YAML output.
const redacted = "<redacted>"

// YAML returns the normalized task file (for `validate -o yaml`): defaults
// filled in, overrides and ${VAR} applied, one document per task after
// the header of a pipeline. Secret values are redacted.
func (f *File) YAML() ([]byte, error) {
	return f.yaml(true)
}

func (f *File) yaml(redact bool) ([]byte, error) {
	if len(f.Tasks) == 0 {
		return nil, nil // not a task file (see File.Warnings): nothing to print
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if f.Execution != "" || len(f.Tasks) > 1 || (len(f.Tasks) == 1 && f.Name != f.Tasks[0].Name) {
		h := &ymap{}
		h.str("name", f.Name)
		h.str("execution", f.Execution)
		if len(f.PrimaryTasks) > 0 {
			h.add("primary_tasks", strList(f.PrimaryTasks))
		}
		if f.TerminationDelaySeconds > 0 {
			h.str("termination_delay", strconv.Itoa(f.TerminationDelaySeconds)+"s")
		}
		if n := h.node(); n != nil {
			if err := enc.Encode(n); err != nil {
				return nil, err
			}
		}
	}
	for _, t := range f.Tasks {
		if err := enc.Encode(taskNode(t, redact)); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ymap builds a mapping node with keys in insertion order.
type ymap struct{ content []*yaml.Node }

func (m *ymap) add(key string, v *yaml.Node) {
	if v == nil {
		return
	}
	m.content = append(m.content, scalarNode(key), v)
}

func (m *ymap) str(key, v string) {
	if v != "" {
		m.add(key, scalarNode(v))
	}
}

func (m *ymap) node() *yaml.Node {
	if m == nil || len(m.content) == 0 {
		return nil
	}
	return &yaml.Node{Kind: yaml.MappingNode, Content: m.content}
}

// scalarNode is a string. yaml.v3 quotes what YAML 1.2 would read as
// another type; task files are read as YAML 1.1 (as PyYAML, so SkyPilot,
// reads them), which also takes "80:1" for a base-60 int and "0777" for
// octal, so those are quoted here.
func scalarNode(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	switch {
	case len(s) > 0 && bytes.ContainsRune([]byte(s), '\n'):
		n.Style = yaml.LiteralStyle
	case reNull.MatchString(s) || reBool.MatchString(s) || reInt.MatchString(s) || reFloat.MatchString(s) || reTime.MatchString(s):
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func intNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

// floatNode writes a number; a whole number is written without a
// fraction (yaml.v3 would otherwise tag it !!float).
func floatNode(f float64) *yaml.Node {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatFloat(f, 'f', -1, 64)}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(f, 'g', -1, 64)}
}

func nullNode() *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
}

func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func strList(list []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode}
	for _, s := range list {
		n.Content = append(n.Content, scalarNode(s))
	}
	return n
}

func strMap(m map[string]string, redact bool) *yaml.Node {
	return envMap(m, nil, redact)
}

// envMap writes envs or secrets, the unset ones as null.
func envMap(m map[string]string, unset []string, redact bool) *yaml.Node {
	all := map[string]*yaml.Node{}
	for k, v := range m {
		if redact {
			v = redacted
		}
		all[k] = scalarNode(v)
	}
	for _, k := range unset {
		all[k] = nullNode()
	}
	y := &ymap{}
	for _, k := range sortedKeys(all) {
		y.add(k, all[k])
	}
	return y.node()
}

// jsonNode converts JSON (config, post_data) back to YAML, keeping
// numbers exact and mapping keys sorted.
func jsonNode(raw json.RawMessage) *yaml.Node {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	return anyNode(v)
}

func anyNode(v any) *yaml.Node {
	switch x := v.(type) {
	case nil:
		return nullNode()
	case bool:
		return boolNode(x)
	case json.Number:
		tag := "!!float"
		if _, err := x.Int64(); err == nil || !bytes.ContainsAny([]byte(x), ".eE") {
			tag = "!!int"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: x.String()}
	case string:
		return scalarNode(x)
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		for _, it := range x {
			n.Content = append(n.Content, anyNode(it))
		}
		return n
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range sortedKeys(x) {
			n.Content = append(n.Content, scalarNode(k), anyNode(x[k]))
		}
		return n
	}
	return nullNode()
}

func taskNode(t *Task, redact bool) *yaml.Node {
	m := &ymap{}
	m.str("name", t.Name)
	if t.WorkdirGit != nil {
		w := &ymap{}
		w.str("url", t.WorkdirGit.URL)
		w.str("ref", t.WorkdirGit.Ref)
		m.add("workdir", w.node())
	} else {
		m.str("workdir", t.Workdir)
	}
	m.add("num_nodes", intNode(t.NumNodes))
	m.add("resources", resourcesNode(&t.Resources, nil))
	m.add("envs", envMap(t.Envs, t.UnsetEnvs, false))
	m.add("secrets", envMap(t.Secrets, t.UnsetSecrets, redact))
	if len(t.ManagedSecrets) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, s := range t.ManagedSecrets {
			name := s.Name
			if s.Scope != "" {
				name = s.Scope + "." + name
			}
			if s.MountPath == "" {
				seq.Content = append(seq.Content, scalarNode(name))
				continue
			}
			inner := &ymap{}
			inner.str("mount_path", s.MountPath)
			outer := &ymap{}
			outer.add(name, inner.node())
			seq.Content = append(seq.Content, outer.node())
		}
		m.add("managed_secrets", seq)
	}
	if len(t.FileMounts) > 0 {
		fm := &ymap{}
		for _, f := range t.FileMounts {
			if f.Storage != nil {
				fm.add(f.Dst, storageNode(f.Storage))
			} else {
				fm.add(f.Dst, scalarNode(f.Src))
			}
		}
		m.add("file_mounts", fm.node())
	}
	if len(t.Volumes) > 0 {
		vm := &ymap{}
		for _, v := range t.Volumes {
			vm.add(v.Path, volumeNode(v))
		}
		m.add("volumes", vm.node())
	}
	m.add("service", serviceNode(t.Service))
	m.add("pool", poolNode(t.Pool))
	m.add("config", jsonNode(t.Config))
	m.str("event_callback", t.EventCallback)
	for _, io := range []struct {
		key string
		d   *DataEstimate
	}{{"inputs", t.Inputs}, {"outputs", t.Outputs}} {
		if io.d != nil {
			x := &ymap{}
			x.add(io.d.Path, floatNode(io.d.SizeGB))
			m.add(io.key, x.node())
		}
	}
	if t.APIServerAccess != nil {
		m.add("api_server_access", boolNode(*t.APIServerAccess))
	}
	m.str("setup", t.Setup)
	m.str("run", t.Run)
	return m.node()
}

func storageNode(s *Storage) *yaml.Node {
	m := &ymap{}
	switch {
	case s.NameUnset:
		m.add("name", nullNode())
	case uriScheme(s.Source) == "":
		// With a bucket URI source, the name is the URI's bucket.
		m.str("name", s.Name)
	}
	m.str("source", s.Source)
	if len(s.SourceList) > 0 {
		m.add("source", strList(s.SourceList))
	}
	m.str("store", s.Store)
	m.add("persistent", boolNode(s.Persistent))
	m.str("mode", s.Mode)
	m.str("type", s.Type)
	m.str("mount_options", s.MountOptions)
	cfg := &ymap{}
	if s.Mount != nil {
		mm := &ymap{}
		if s.Mount.ReadOnly {
			mm.add("read_only", boolNode(true))
		}
		if len(s.Mount.HFMountArgs) > 0 {
			mm.add("hf_mount_args", strList(s.Mount.HFMountArgs))
		}
		cfg.add("mount", mm.node())
	}
	if c := s.MountCached; c != nil {
		mc := &ymap{}
		if c.Transfers > 0 {
			mc.add("transfers", intNode(c.Transfers))
		}
		mc.str("buffer_size", c.BufferSize)
		mc.str("vfs_cache_max_size", c.VFSCacheMaxSize)
		mc.str("vfs_cache_max_age", c.VFSCacheMaxAge)
		mc.str("vfs_read_ahead", c.VFSReadAhead)
		mc.str("vfs_read_chunk_size", c.VFSReadChunkSize)
		if c.VFSReadChunkStreams != nil {
			mc.add("vfs_read_chunk_streams", intNode(*c.VFSReadChunkStreams))
		}
		mc.str("vfs_write_back", c.VFSWriteBack)
		if c.ReadOnly {
			mc.add("read_only", boolNode(true))
		}
		cfg.add("mount_cached", mc.node())
	}
	m.add("config", cfg.node())
	m.str("_bucket_sub_path", s.BucketSubPath)
	return m.node()
}

func volumeNode(v VolumeMount) *yaml.Node {
	if v.SubPath == "" && v.Size == "" && v.Labels == nil && v.Config == nil {
		return scalarNode(v.Name)
	}
	m := &ymap{}
	m.str("name", v.Name)
	m.str("sub_path", v.SubPath)
	m.str("size", v.Size)
	m.add("labels", strMap(v.Labels, false))
	if cfg := jsonNode(v.Config); cfg != nil {
		m.content = append(m.content, cfg.Content...)
	}
	return m.node()
}
