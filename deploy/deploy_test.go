// The files of deploy/ are configuration, not code; these tests load each with the
// parser that will read it (nats-server's for the NATS configs, a YAML parser for
// compose, Kubernetes and Helm) and check that the files agree with one another: the
// compose services give cluster.conf every variable it needs, the Helm values grant the
// roles exactly what accounts.conf grants, the probes hit the worker's endpoints. The
// NATS configs are also run for real, with workers and the CLI, by internal/e2e.
package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// testPasswords are the role passwords the NATS configs read from the environment.
var testPasswords = map[string]string{
	"BRR_WORKER_PASSWORD":     "brr_w_0123",
	"BRR_PUBLISHER_PASSWORD":  "brr_p_4567",
	"BRR_SUBSCRIBER_PASSWORD": "brr_s_89ab",
	"BRR_ADMIN_PASSWORD":      "brr_a_cdef",
}

func setenv(t *testing.T, vars map[string]string) {
	t.Helper()
	for k, v := range vars {
		t.Setenv(k, v)
	}
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// at walks keys (map keys, or list indexes as ints) down from v; nil when absent.
func at(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestEveryYAMLFileParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml")) {
			return err
		}
		if len(yamlDocs(t, path)) == 0 {
			t.Errorf("%s: no YAML document", path)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Fatalf("found %d YAML files under deploy/, want the compose, Kubernetes, Helm, Prometheus, Grafana and worker files", n)
	}
}

func TestNATSConfigs(t *testing.T) {
	setenv(t, testPasswords)
	opts, err := server.ProcessConfigFile("nats/single.conf")
	if err != nil {
		t.Fatalf("single.conf: %v", err)
	}
	if !opts.JetStream || opts.StoreDir != "/var/lib/nats" || opts.Host != "127.0.0.1" || opts.Port != 4222 {
		t.Errorf("single.conf: jetstream %v store %q listen %s:%d, want JetStream in /var/lib/nats on 127.0.0.1:4222", opts.JetStream, opts.StoreDir, opts.Host, opts.Port)
	}
	checkUsers(t, "single.conf", opts)

	setenv(t, map[string]string{
		"NATS_NAME": "nats-2", "NATS_LISTEN": "127.0.0.1:4223", "NATS_HTTP": "127.0.0.1:8223",
		"NATS_CLUSTER_LISTEN": "127.0.0.1:6223", "NATS_STORE": "/data/jetstream",
		"NATS_ROUTES": "[nats://127.0.0.1:6222, nats://127.0.0.1:6223, nats://127.0.0.1:6224]",
	})
	opts, err = server.ProcessConfigFile("nats/cluster.conf")
	if err != nil {
		t.Fatalf("cluster.conf: %v", err)
	}
	if opts.ServerName != "nats-2" || opts.Port != 4223 || opts.Cluster.Name != "brr" || opts.Cluster.Port != 6223 || len(opts.Routes) != 3 || opts.StoreDir != "/data/jetstream" {
		t.Errorf("cluster.conf: name %q port %d cluster %q:%d routes %v store %q", opts.ServerName, opts.Port, opts.Cluster.Name, opts.Cluster.Port, opts.Routes, opts.StoreDir)
	}
	checkUsers(t, "cluster.conf", opts)
}

// checkUsers checks that the four roles of accounts.conf are in account BRR, with their
// passwords from the environment, and only the admin without permissions.
func checkUsers(t *testing.T, file string, opts *server.Options) {
	t.Helper()
	got := map[string]*server.User{}
	for _, u := range opts.Users {
		got[u.Username] = u
	}
	for _, role := range []string{"worker", "publisher", "subscriber", "admin"} {
		u := got[role]
		switch {
		case u == nil:
			t.Errorf("%s: no user %q", file, role)
		case u.Account == nil || u.Account.Name != "BRR":
			t.Errorf("%s: user %q is not in account BRR", file, role)
		case u.Password != testPasswords["BRR_"+strings.ToUpper(role)+"_PASSWORD"]:
			t.Errorf("%s: user %q does not take its password from BRR_%s_PASSWORD", file, role, strings.ToUpper(role))
		case (u.Permissions == nil) != (role == "admin"):
			t.Errorf("%s: user %q permissions = %+v; only the admin has none", file, role, u.Permissions)
		}
	}
}

// TestPasswordForm pins why the docs ask for passwords like brr_<hex>: nats-server
// parses an environment variable's value as a config value, so some strings are not
// read as strings at all.
func TestPasswordForm(t *testing.T) {
	for _, c := range []struct {
		password string
		ok       bool
	}{
		{"brr_0123456789", true},
		{"brr_3e5a", true},
		{"Zx9+/aQ==", true},
		{"12345", false}, // a number
		{"true", false},  // a boolean
		{"a b", false},
	} {
		setenv(t, testPasswords)
		t.Setenv("BRR_WORKER_PASSWORD", c.password)
		opts, err := server.ProcessConfigFile("nats/single.conf")
		ok := err == nil && opts.Users[0].Password == c.password
		if ok != c.ok {
			t.Errorf("password %q: read back as a string = %v (err %v), want %v", c.password, ok, err, c.ok)
		}
	}
}

// TestNoSecretsInDeploy: every password, token or key in deploy/ is a reference to the
// environment, a secret or a file, or empty in an example.
func TestNoSecretsInDeploy(t *testing.T) {
	secretLine := regexp.MustCompile(`(?i)^[-\s]*"?([\w]*(?:password|token|secret))"?\s*[:=]\s*(.*)$`)
	reference := regexp.MustCompile(`^("?\$\{?[A-Z_]+|<< \$[A-Z_]+ >>|$|\{?valueFrom|\{name:|<redacted>)`)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".md") || strings.HasSuffix(path, ".json") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for line := 1; sc.Scan(); line++ {
			text := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(text, "#") {
				continue
			}
			m := secretLine.FindStringSubmatch(text)
			if m == nil || m[1] == "automountServiceAccountToken" {
				continue
			}
			value := strings.TrimSpace(m[2])
			if !reference.MatchString(value) && !strings.Contains(value, "secretKeyRef") && !strings.Contains(value, "$BRR_") {
				t.Errorf("%s:%d: %q looks like a secret written into the file; reference the environment or a secret instead", path, line, text)
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCompose(t *testing.T) {
	docs := yamlDocs(t, "compose/compose.yaml")
	services, _ := at(docs[0], "services").(map[string]any)
	for _, name := range []string{"nats-1", "nats-2", "nats-3", "worker-1", "worker-2", "worker-3", "prometheus", "grafana"} {
		if services[name] == nil {
			t.Fatalf("compose.yaml: no service %s", name)
		}
	}

	// Each service's bind mounts exist; the NATS nodes mount deploy/nats, the workers
	// the cluster worker config, Grafana the dashboard.
	mounts := map[string][]string{}
	for name, svc := range services {
		vols, _ := at(svc, "volumes").([]any)
		for _, v := range vols {
			src, dst, _ := strings.Cut(v.(string), ":")
			mounts[name] = append(mounts[name], dst)
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
					t.Errorf("compose.yaml: service %s mounts %s: %v", name, src, err)
				}
			}
		}
	}
	for name, want := range map[string]string{
		"nats-1": "/etc/nats:ro", "nats-3": "/etc/nats:ro", "worker-1": "/etc/brr/worker.yaml:ro",
		"worker-3": "/etc/brr/worker.yaml:ro", "grafana": "/etc/brr/brr.json:ro", "prometheus": "/etc/prometheus/prometheus.yml:ro",
	} {
		if !slices.Contains(mounts[name], want) {
			t.Errorf("compose.yaml: service %s mounts %v, want %s", name, mounts[name], want)
		}
	}
	// Prometheus loads the alert rules from where compose mounts them.
	if !slices.Contains(mounts["prometheus"], "/etc/prometheus/alerts.yml:ro") {
		t.Errorf("compose.yaml: prometheus mounts %v, want the alert rules at /etc/prometheus/alerts.yml", mounts["prometheus"])
	}
	if rules := at(yamlDocs(t, "compose/prometheus.yml")[0], "rule_files"); !reflect.DeepEqual(rules, []any{"/etc/prometheus/alerts.yml"}) {
		t.Errorf("compose/prometheus.yml: rule_files = %v, want [/etc/prometheus/alerts.yml]", rules)
	}

	// Every node, with its compose environment, loads cluster.conf as a member of one
	// 3-node cluster.
	names := map[string]bool{}
	for _, node := range []string{"nats-1", "nats-2", "nats-3"} {
		env := map[string]string{}
		for k, v := range at(services[node], "environment").(map[string]any) {
			s := v.(string)
			if strings.HasPrefix(s, "${") {
				s = "brr_from_env"
			}
			env[k] = s
		}
		setenv(t, env)
		if got := strs(at(services[node], "command")); !slices.Equal(got, []string{"-c", "/etc/nats/cluster.conf"}) {
			t.Errorf("compose.yaml: %s runs %v, want -c /etc/nats/cluster.conf", node, got)
		}
		opts, err := server.ProcessConfigFile("nats/cluster.conf")
		if err != nil {
			t.Fatalf("compose.yaml: %s's environment does not load cluster.conf: %v", node, err)
		}
		if opts.Cluster.Name != "brr" || len(opts.Routes) != 3 || opts.Host != "0.0.0.0" {
			t.Errorf("compose.yaml: %s: cluster %q, routes %v, listen %s", node, opts.Cluster.Name, opts.Routes, opts.Host)
		}
		names[opts.ServerName] = true
	}
	if len(names) != 3 {
		t.Errorf("compose.yaml: node names %v, want 3 distinct", names)
	}

	for _, w := range []string{"worker-1", "worker-2", "worker-3"} {
		env, _ := at(services[w], "environment").(map[string]any)
		if url, _ := env["BRR_NATS_URL"].(string); strings.Count(url, "nats://nats-") != 3 {
			t.Errorf("compose.yaml: %s BRR_NATS_URL = %q, want the 3 nodes", w, url)
		}
		for _, k := range []string{"BRR_NATS_PASSWORD", "BRR_REPO_PASSWORD"} {
			if v, _ := env[k].(string); !strings.HasPrefix(v, "${") {
				t.Errorf("compose.yaml: %s %s = %q, want it from .env", w, k, v)
			}
		}
	}
	for _, w := range []string{"worker-2", "worker-3"} {
		if at(services[w], "depends_on", "worker-1", "condition") != "service_healthy" {
			t.Errorf("compose.yaml: %s must wait for worker-1 to be healthy (it creates the repository)", w)
		}
	}
	targets := strs(at(yamlDocs(t, "compose/prometheus.yml")[0], "scrape_configs", 0, "static_configs", 0, "targets"))
	if !slices.Equal(targets, []string{"worker-1:8080", "worker-2:8080", "worker-3:8080"}) {
		t.Errorf("prometheus.yml targets = %v, want the 3 workers", targets)
	}
}

func TestKubernetesWorker(t *testing.T) {
	byKind := map[string]map[string]any{}
	for _, doc := range yamlDocs(t, "k8s/worker.yaml") {
		kind, _ := doc["kind"].(string)
		if doc["apiVersion"] == nil || kind == "" || at(doc, "metadata", "name") == nil {
			t.Fatalf("k8s/worker.yaml: a document without apiVersion, kind or metadata.name: %v", doc)
		}
		byKind[kind] = doc
	}
	for _, kind := range []string{"ConfigMap", "Deployment", "Service", "ServiceMonitor", "PodDisruptionBudget"} {
		if byKind[kind] == nil {
			t.Fatalf("k8s/worker.yaml: no %s", kind)
		}
	}
	dep := byKind["Deployment"]
	if r, _ := at(dep, "spec", "replicas").(int); r < 2 {
		t.Errorf("Deployment replicas = %v, want several", at(dep, "spec", "replicas"))
	}
	c := at(dep, "spec", "template", "spec", "containers", 0)
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if got := at(c, probe, "httpGet", "path"); got != path || at(c, probe, "httpGet", "port") != "http" {
			t.Errorf("Deployment %s = %v on port %v, want %s on port http", probe, got, at(c, probe, "httpGet", "port"), path)
		}
	}
	args := strs(at(c, "args"))
	if i := slices.Index(args, "--data-dir"); i < 0 || i+1 >= len(args) {
		t.Fatalf("Deployment args %v have no --data-dir", args)
	} else {
		dataDir := args[i+1]
		var volume string
		for _, m := range at(c, "volumeMounts").([]any) {
			if at(m, "mountPath") == dataDir {
				volume, _ = at(m, "name").(string)
			}
		}
		found := false
		for _, v := range at(dep, "spec", "template", "spec", "volumes").([]any) {
			found = found || (volume != "" && at(v, "name") == volume)
		}
		if !found {
			t.Errorf("Deployment: the data dir %s is not on a volume", dataDir)
		}
	}

	// The config the ConfigMap holds: NATS of the Helm values, streams on 3 nodes.
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(at(byKind["ConfigMap"], "data", "worker.yaml").(string)), &cfg); err != nil {
		t.Fatalf("ConfigMap worker.yaml: %v", err)
	}
	if at(cfg, "streams", "replicas") != 3 || at(cfg, "nats", "user") != "worker" {
		t.Errorf("ConfigMap worker.yaml: streams.replicas %v, nats.user %v", at(cfg, "streams", "replicas"), at(cfg, "nats", "user"))
	}
	if g, _ := at(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int); g <= 25 {
		t.Errorf("terminationGracePeriodSeconds = %d, want more than jobs.drain_timeout (25s)", g)
	}

	// The ServiceMonitor scrapes the Service's http port, which the Service has.
	svcLabels := at(byKind["Service"], "metadata", "labels").(map[string]any)
	for k, v := range at(byKind["ServiceMonitor"], "spec", "selector", "matchLabels").(map[string]any) {
		if svcLabels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%v, which the Service lacks", k, v)
		}
	}
	if at(byKind["ServiceMonitor"], "spec", "endpoints", 0, "port") != "http" || at(byKind["Service"], "spec", "ports", 0, "name") != "http" {
		t.Error("ServiceMonitor and Service do not agree on port http")
	}
}

// TestHelmValues: the values for the official nats chart make a 3-node JetStream cluster
// and give each role exactly the permissions of accounts.conf.
func TestHelmValues(t *testing.T) {
	v := yamlDocs(t, "k8s/nats-values.yaml")[0]
	if at(v, "config", "cluster", "enabled") != true || at(v, "config", "cluster", "replicas") != 3 || at(v, "config", "jetstream", "enabled") != true {
		t.Errorf("nats-values.yaml: config.cluster %v, config.jetstream.enabled %v; want a 3-node JetStream cluster", at(v, "config", "cluster"), at(v, "config", "jetstream", "enabled"))
	}
	setenv(t, testPasswords)
	opts, err := server.ProcessConfigFile("nats/single.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*server.User{}
	for _, u := range opts.Users {
		want[u.Username] = u
	}
	env, _ := at(v, "container", "env").(map[string]any)
	users, _ := at(v, "config", "merge", "accounts", "BRR", "users").([]any)
	if len(users) != len(want) {
		t.Fatalf("nats-values.yaml: %d users in account BRR, accounts.conf has %d", len(users), len(want))
	}
	list := func(u any, keys ...any) []string {
		if l, ok := at(u, keys...).([]any); ok {
			return strs(l)
		}
		return nil
	}
	for _, u := range users {
		name, _ := at(u, "user").(string)
		w := want[name]
		if w == nil {
			t.Errorf("nats-values.yaml: user %q is not in accounts.conf", name)
			continue
		}
		variable := "BRR_" + strings.ToUpper(name) + "_PASSWORD"
		if at(u, "password") != "<< $"+variable+" >>" || at(env, variable, "valueFrom", "secretKeyRef", "key") != name {
			t.Errorf("nats-values.yaml: user %q password %v, env %v; want << $%s >> from secret key %s", name, at(u, "password"), at(env, variable), variable, name)
		}
		if w.Permissions == nil {
			if at(u, "permissions") != nil {
				t.Errorf("nats-values.yaml: user %q has permissions, accounts.conf gives it none", name)
			}
			continue
		}
		var pubAllow, pubDeny, subAllow, subDeny []string
		if p := w.Permissions.Publish; p != nil {
			pubAllow, pubDeny = p.Allow, p.Deny
		}
		if s := w.Permissions.Subscribe; s != nil {
			subAllow, subDeny = s.Allow, s.Deny
		}
		same := func(what string, got, want []string) {
			got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
			if !slices.Equal(got, want) {
				t.Errorf("nats-values.yaml: user %q %s = %v, accounts.conf has %v", name, what, got, want)
			}
		}
		same("publish.allow", list(u, "permissions", "publish", "allow"), pubAllow)
		same("publish.deny", list(u, "permissions", "publish", "deny"), pubDeny)
		same("subscribe.allow", list(u, "permissions", "subscribe", "allow"), subAllow)
		same("subscribe.deny", list(u, "permissions", "subscribe", "deny"), subDeny)
		// allow_responses: true is the server's default response permission.
		if got, want := at(u, "permissions", "allow_responses") == true, w.Permissions.Response != nil; got != want {
			t.Errorf("nats-values.yaml: user %q allow_responses %v, accounts.conf %v", name, at(u, "permissions", "allow_responses"), w.Permissions.Response)
		} else if want && (w.Permissions.Response.MaxMsgs != server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS || w.Permissions.Response.Expires != server.DEFAULT_ALLOW_RESPONSE_EXPIRATION) {
			t.Errorf("accounts.conf: user %q allow_responses %+v; the Helm values say true, the defaults", name, *w.Permissions.Response)
		}
	}
}

// TestPrivateInboxes: each user with permissions may subscribe to its own inboxes,
// _INBOX_<user>.>, and to no other inbox, so that no credential reads another's replies;
// and the worker, which answers queries, replies by allow_responses, not by a grant to
// publish into inboxes.
func TestPrivateInboxes(t *testing.T) {
	setenv(t, testPasswords)
	opts, err := server.ProcessConfigFile("nats/single.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range opts.Users {
		p := u.Permissions
		if p == nil {
			continue // the admin: everything
		}
		var inboxes []string
		for _, s := range p.Subscribe.Allow {
			if strings.HasPrefix(s, "_INBOX") || s == ">" || strings.HasPrefix(s, "*") {
				inboxes = append(inboxes, s)
			}
		}
		if want := "_INBOX_" + u.Username + ".>"; !slices.Equal(inboxes, []string{want}) {
			t.Errorf("user %q may subscribe to the inboxes %v, want only %s", u.Username, inboxes, want)
		}
		for _, s := range p.Publish.Allow {
			if strings.HasPrefix(s, "_INBOX") || s == ">" || strings.HasPrefix(s, "*") {
				t.Errorf("user %q may publish to %s: replies go by allow_responses", u.Username, s)
			}
		}
		if (p.Response != nil) != (u.Username == "worker") {
			t.Errorf("user %q allow_responses %+v: only the worker answers requests", u.Username, p.Response)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// unit reads a systemd unit file into section -> key -> values.
func unit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, i+1, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

func TestSystemdUnits(t *testing.T) {
	for _, c := range []struct {
		file, user, config string
	}{
		{"systemd/brr-worker.service", "brr", "/etc/brr/worker.yaml"},
		{"systemd/nats-server.service", "nats", "/etc/nats/single.conf"},
	} {
		u := unit(t, c.file)
		for _, s := range []string{"Unit", "Service", "Install"} {
			if u[s] == nil {
				t.Fatalf("%s: no [%s]", c.file, s)
			}
		}
		svc := u["Service"]
		one := func(k string) string {
			if v := svc[k]; len(v) > 0 {
				return v[len(v)-1]
			}
			return ""
		}
		if one("User") != c.user || !strings.Contains(one("ExecStart"), c.config) || one("EnvironmentFile") == "" {
			t.Errorf("%s: User=%s ExecStart=%s EnvironmentFile=%s", c.file, one("User"), one("ExecStart"), one("EnvironmentFile"))
		}
		for k, want := range map[string]string{
			"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "PrivateDevices": "yes",
			"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
			"RestrictSUIDSGID": "yes", "LockPersonality": "yes", "SystemCallArchitectures": "native",
			"Restart": "on-failure", "UMask": "0077",
		} {
			if got := one(k); got != want {
				t.Errorf("%s: %s=%q, want %q", c.file, k, got, want)
			}
		}
		if _, ok := svc["CapabilityBoundingSet"]; !ok {
			t.Errorf("%s: no CapabilityBoundingSet", c.file)
		}
	}
	worker := unit(t, "systemd/brr-worker.service")["Service"]
	if got := worker["CapabilityBoundingSet"]; !slices.Equal(got, []string{"CAP_DAC_READ_SEARCH"}) {
		t.Errorf("brr-worker.service keeps capabilities %v, want only CAP_DAC_READ_SEARCH", got)
	}
	if got := worker["TimeoutStopSec"]; len(got) != 1 || atoi(got[0]) <= 30 {
		t.Errorf("brr-worker.service TimeoutStopSec=%v, want more than the default jobs.drain_timeout (30s)", got)
	}
}
