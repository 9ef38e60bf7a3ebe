package spec

import (
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// taskKeys are the fields of a task (get_task_schema); _-prefixed ones are
// internal and accepted but not used.
var taskKeys = []string{
	"name", "workdir", "event_callback", "num_nodes", "resources", "file_mounts",
	"service", "pool", "setup", "run", "envs", "secrets", "managed_secrets",
	"inputs", "outputs", "config", "volumes", "api_server_access",
	"file_mounts_mapping", "volume_mounts", "_metadata", "_user_specified_yaml",
}

// reTaskName is SkyPilot's task name pattern.
var reTaskName = regexp.MustCompile(`^[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*$`)

func (d *decoder) checkName(n *yaml.Node, path, name string) {
	if !reTaskName.MatchString(name) {
		d.errorf(d.deref(n), path, "invalid name %q: use letters, digits, and single or double . _ -, starting and ending with a letter or digit", name)
	}
}

// task decodes one task document (nil: an empty task).
func (d *decoder) task(doc *yaml.Node, opts Options) *Task {
	t := &Task{NumNodes: 1, Resources: Resources{DiskSize: DefaultDiskSizeGB}}
	if doc == nil {
		d.finishEnvs(t, nil, nil, opts, nil)
		return t
	}
	dn := d.deref(doc)
	if dn == nil || dn.Kind != yaml.MappingNode {
		d.errorf(dn, "", "a task must be a mapping of fields (name, resources, run, ...), got %s", d.describe(doc))
		return nil
	}
	o, ok := d.object(doc, "", taskKeys)
	if !ok {
		return nil
	}

	if n, ok := o.get("name"); ok {
		if s, ok := d.str(n, "name"); ok {
			d.checkName(n, "name", s)
			t.Name = s
		}
	}
	if n, ok := o.get("num_nodes"); ok {
		if v, ok := d.integer(n, "num_nodes"); ok {
			if v <= 0 {
				d.errorf(d.deref(n), "num_nodes", "must be a positive integer, got %d", v)
			} else {
				t.NumNodes = v
			}
		}
	}
	if n, ok := o.get("setup"); ok {
		t.Setup, _ = d.str(n, "setup")
	}
	if n, ok := o.get("run"); ok {
		t.Run, _ = d.str(n, "run")
	}
	if n, ok := o.get("event_callback"); ok {
		t.EventCallback, _ = d.str(n, "event_callback")
	}
	if n, ok := o.get("api_server_access"); ok {
		if b, ok := d.boolean(n, "api_server_access"); ok {
			t.APIServerAccess = &b
		}
	}

	if n, ok := o.get("resources"); ok {
		t.Resources = d.resources(n, "resources")
	}
	d.defaultStore = storeForCloud(t.Resources)

	envs, envNodes := d.envs(o)
	secrets, secretNodes := d.secrets(o, t)
	vars := d.finishEnvs(t, envs, secrets, opts, mergeNodes(envNodes, secretNodes))

	// file_mounts, service, workdir and volumes see $VAR/${VAR}.
	d.vars = vars
	if n, ok := o.get("workdir"); ok {
		d.workdir(n, t)
	}
	var fmVolumes []DiskVolume
	if n, ok := o.get("file_mounts"); ok {
		fmVolumes = d.fileMounts(n, t)
	}
	var svc *yaml.Node
	if n, ok := o.get("service"); ok {
		svc = n
		t.Service = d.service(n)
	}
	if n, ok := o.get("volumes"); ok {
		t.Volumes = d.volumes(n)
	}
	d.vars = nil

	if n, ok := o.get("pool"); ok {
		t.Pool = d.pool(n, "pool")
		if svc != nil {
			d.errorf(o.keyNode("pool"), "pool", "a task cannot have both service and pool; keep one")
		}
	}
	if len(fmVolumes) > 0 {
		addVolumes(&t.Resources, fmVolumes)
	}
	if n, ok := o.get("config"); ok {
		t.Config = d.config(n)
	}
	if n, ok := o.get("managed_secrets"); ok {
		d.managedSecrets(n, t)
	}
	t.Inputs = d.dataEstimate(o, "inputs")
	t.Outputs = d.dataEstimate(o, "outputs")
	for _, k := range []string{"file_mounts_mapping", "_metadata"} {
		if n, ok := o.get(k); ok {
			d.mapping(n, k)
		}
	}
	if n, ok := o.get("volume_mounts"); ok {
		d.seq(n, "volume_mounts")
	}

	d.checkTask(o, t)
	return t
}

func mergeNodes(a, b map[string]*yaml.Node) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	for k, v := range a {
		out["env:"+k] = v
	}
	for k, v := range b {
		out["secret:"+k] = v
	}
	return out
}

// envs reads `envs`: names must be variable names; values are coerced to
// strings as SkyPilot does (str()); null means "must be set".
func (d *decoder) envs(o *object) (map[string]*string, map[string]*yaml.Node) {
	envs, nodes := map[string]*string{}, map[string]*yaml.Node{}
	n, ok := o.get("envs")
	if !ok {
		return envs, nodes
	}
	ps, ok := d.mapping(n, "envs")
	if !ok {
		return envs, nodes
	}
	for _, p := range ps {
		d.variable("envs", p, envs, nodes)
	}
	return envs, nodes
}

// variable reads one NAME: value entry of envs or secrets into vals (nil
// for null, which means "must be set") and records its key node.
func (d *decoder) variable(field string, p pair, vals map[string]*string, nodes map[string]*yaml.Node) {
	if !reEnvName.MatchString(p.key) {
		d.errorf(d.deref(p.k), field, "%q is not a valid variable name (letters, digits and _, not starting with a digit)", p.key)
		return
	}
	nodes[p.key] = p.k
	if d.isNull(p.v) {
		vals[p.key] = nil
		return
	}
	if v, ok := d.pyStr(p.v, child(field, p.key), "a string, a number, a boolean or null"); ok {
		vals[p.key] = ptr(v)
	}
}

// secrets reads `secrets`: a mapping like envs (keys `secrets:NAME` are
// references to managed secrets and must be null), or a list of
// `secrets:NAME` references.
func (d *decoder) secrets(o *object, t *Task) (map[string]*string, map[string]*yaml.Node) {
	secrets, nodes := map[string]*string{}, map[string]*yaml.Node{}
	n, ok := o.get("secrets")
	if !ok {
		return secrets, nodes
	}
	k, _ := d.kindOf(n)
	if k == kSeq {
		items, _ := d.seq(n, "secrets")
		for i, it := range items {
			s, ok := d.str(it, index("secrets", i))
			if !ok {
				continue
			}
			if !strings.HasPrefix(s, "secrets:") {
				d.errorf(d.deref(it), index("secrets", i), "a list of secrets holds references like \"secrets:%s\"; for a value, use the mapping form (secrets: {%s: value})", s, s)
				continue
			}
			t.ManagedSecrets = append(t.ManagedSecrets, managedRef(s, ""))
		}
		return secrets, nodes
	}
	ps, ok := d.mapping(n, "secrets")
	if !ok {
		return secrets, nodes
	}
	for _, p := range ps {
		path := child("secrets", p.key)
		if strings.HasPrefix(p.key, "secrets:") {
			if !d.isNull(p.v) {
				d.errorf(d.deref(p.v), path, "a reference to a managed secret (secrets: prefix) must have a null value; for an inline value, drop the prefix")
				continue
			}
			t.ManagedSecrets = append(t.ManagedSecrets, managedRef(p.key, ""))
			continue
		}
		d.variable("secrets", p, secrets, nodes)
	}
	return secrets, nodes
}

// managedRef parses "[secrets:][scope.]NAME".
func managedRef(raw, mountPath string) ManagedSecret {
	raw = strings.TrimPrefix(raw, "secrets:")
	for _, scope := range []string{"personal", "workspace", "global"} {
		if strings.HasPrefix(raw, scope+".") {
			return ManagedSecret{Name: raw[len(scope)+1:], Scope: scope, MountPath: mountPath}
		}
	}
	return ManagedSecret{Name: raw, MountPath: mountPath}
}

// finishEnvs applies the overrides, reports what is still null, fills
// t.Envs/t.Secrets and returns the variables for ${VAR} substitution.
func (d *decoder) finishEnvs(t *Task, envs, secrets map[string]*string, opts Options, nodes map[string]*yaml.Node) map[string]string {
	if envs == nil {
		envs = map[string]*string{}
	}
	if secrets == nil {
		secrets = map[string]*string{}
	}
	mergeOverrides(envs, secrets, opts)
	vars := map[string]string{}
	d.unset = map[string]bool{}
	report := func(kind, flag, name string) {
		n := nodes[kind+":"+name]
		path := child(kind+"s", name)
		d.errorf(d.deref(n), path, "%s %s is null and must be set: pass %s %s=VALUE (or %s %s to take it from your environment); for an empty value write %s: \"\"", kind, name, flag, name, flag, name, name)
	}
	for _, name := range sortedKeys(envs) {
		v := envs[name]
		if v != nil && opts.AllowUnset && rePlaceholder.MatchString(*v) {
			// `MODEL_CKPT: <bucket-path-to-your-model-ckpt>`: a value for the
			// reader to fill in, as good as null until they do.
			d.warnf(d.deref(nodes["env:"+name]), child("envs", name), "value %q looks like a placeholder; set it with --env %s=VALUE", *v, name)
			v = nil
		}
		if v == nil {
			if opts.AllowUnset {
				d.unset[name] = true
				t.UnsetEnvs = append(t.UnsetEnvs, name)
			} else {
				report("env", "--env", name)
			}
			continue
		}
		if t.Envs == nil {
			t.Envs = map[string]string{}
		}
		t.Envs[name] = *v
		vars[name] = *v
	}
	for _, name := range sortedKeys(secrets) {
		v := secrets[name]
		if v == nil {
			if opts.AllowUnset {
				d.unset[name] = true
				t.UnsetSecrets = append(t.UnsetSecrets, name)
			} else {
				report("secret", "--secret", name)
			}
			continue
		}
		if t.Secrets == nil {
			t.Secrets = map[string]string{}
		}
		t.Secrets[name] = *v
		vars[name] = *v
	}
	return vars
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// workdir reads `workdir`: a local path or {url, ref}.
func (d *decoder) workdir(n *yaml.Node, t *Task) {
	k, _ := d.kindOf(n)
	if k != kMap {
		if s, ok := d.str(n, "workdir"); ok {
			if s == "" {
				s = "." // SkyPilot resolves "" to the current directory
			}
			t.Workdir = s
		}
		return
	}
	o, ok := d.object(n, "workdir", []string{"url", "ref"})
	if !ok {
		return
	}
	g := &GitWorkdir{}
	if u, ok := o.get("url"); ok {
		g.URL, _ = d.str(u, "workdir.url")
	} else {
		d.errorf(o.node, "workdir", "a git workdir needs url (workdir: {url: https://github.com/ORG/REPO.git, ref: main})")
	}
	if r, ok := o.get("ref"); ok {
		g.Ref, _ = d.str(r, "workdir.ref")
	}
	t.WorkdirGit = g
}

func (d *decoder) managedSecrets(n *yaml.Node, t *Task) {
	items, ok := d.seq(n, "managed_secrets")
	if !ok {
		return
	}
	for i, it := range items {
		path := index("managed_secrets", i)
		k, s := d.kindOf(it)
		if k == kStr {
			t.ManagedSecrets = append(t.ManagedSecrets, managedRef(s.str, ""))
			continue
		}
		ps, ok := d.mapping(it, path)
		if !ok {
			continue
		}
		if len(ps) != 1 {
			d.errorf(d.deref(it), path, "must be a secret name, or a mapping of one name to {mount_path: PATH}")
			continue
		}
		p := ps[0]
		mount := ""
		if o, ok := d.object(p.v, child(path, p.key), []string{"mount_path"}); ok {
			if m, ok := o.get("mount_path"); ok {
				mount, _ = d.str(m, child(child(path, p.key), "mount_path"))
			}
		}
		t.ManagedSecrets = append(t.ManagedSecrets, managedRef(p.key, mount))
	}
}

// dataEstimate reads the experimental inputs/outputs: {PATH: SIZE_GB}.
func (d *decoder) dataEstimate(o *object, key string) *DataEstimate {
	n, ok := o.get(key)
	if !ok {
		return nil
	}
	ps, ok := d.mapping(n, key)
	if !ok {
		return nil
	}
	if len(ps) != 1 {
		d.errorf(d.deref(n), key, "must have exactly one entry, {PATH: SIZE_GB}")
		return nil
	}
	size, ok := d.number(ps[0].v, child(key, ps[0].key))
	if !ok {
		return nil
	}
	return &DataEstimate{Path: ps[0].key, SizeGB: size}
}

// checkTask applies the rules that span several fields.
func (d *decoder) checkTask(o *object, t *Task) {
	all := map[string]bool{}
	for k := range t.Envs {
		all[k] = true
	}
	for k := range t.Secrets {
		all[k] = true
	}
	for _, k := range append(append([]string(nil), t.UnsetEnvs...), t.UnsetSecrets...) {
		all[k] = true // declared, to be set with --env/--secret
	}
	var set, missing []string
	for _, k := range dockerLoginEnvs {
		if all[k] {
			set = append(set, k)
		} else {
			missing = append(missing, k)
		}
	}
	if len(set) > 0 && len(missing) > 0 {
		d.errorf(o.keyNode("envs"), "envs", "%s set without %s: the docker login variables go together", strings.Join(set, ", "), strings.Join(missing, ", "))
	}
	if t.Workdir != "" || t.WorkdirGit != nil {
		for _, fm := range t.FileMounts {
			if fm.Dst == "~/sky_workdir" {
				d.errorf(o.keyNode("file_mounts"), "file_mounts", "~/sky_workdir cannot be a file_mounts destination while workdir is set (the workdir is synced there); mount to a path inside it instead")
			}
		}
	}
}

// rePlaceholder matches a documentation placeholder such as <your-bucket>.
var rePlaceholder = regexp.MustCompile(`^<[^<>\n]+>$`)
