// tether-real-cluster starts and stops a real Kubernetes control plane on loopback for the
// real-cluster tests: etcd, kube-apiserver (RBAC, service-account keys, a client CA),
// kube-controller-manager, kube-scheduler and KWOK, which plays the nodes (and their kubelets:
// logs, exec, attach, port-forward) so that pods become Running and Ready and Deployments
// Available without a container runtime.
//
// It is run through scripts/real-cluster, which builds the binaries it starts. Only the Go
// standard library is used, so this module has no go.sum.
//
//	tether-real-cluster up --name NAME --dir DIR --bin BINDIR --stages STAGESDIR [--nodes N] [--owner-pid PID]
//	tether-real-cluster down --dir DIR [--keep-logs]
//	tether-real-cluster status --dir DIR
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage("missing command (up, down, status)")
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	case "status":
		err = status(os.Args[2:])
	case "watch":
		err = watch(os.Args[2:])
	default:
		usage(fmt.Sprintf("unknown command %q (up, down, status)", os.Args[1]))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "error: %s (usage: tether-real-cluster up --name NAME --dir DIR --bin BINDIR --stages DIR [--nodes N] | down --dir DIR | status --dir DIR)\n", msg)
	os.Exit(2)
}

func parse(fs *flag.FlagSet, args []string) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		usage(err.Error())
	}
	if fs.NArg() > 0 {
		usage(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
}

// state is what `up` leaves in DIR/cluster.json for `down` and `status`.
type state struct {
	Name       string         `json:"name"`
	Dir        string         `json:"dir"`
	Kubeconfig string         `json:"kubeconfig"`
	Server     string         `json:"server"`
	Ports      map[string]int `json:"ports"`
	// Component -> process id, in start order.
	Order []string       `json:"order"`
	Pids  map[string]int `json:"pids"`
	// Seconds from the first process start to readiness.
	ReadySeconds float64 `json:"readySeconds"`
}

func (s *state) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "cluster.json"), b, 0o600)
}

func load(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s/cluster.json: %w", dir, err)
	}
	return &s, nil
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	name := fs.String("name", "", "cluster name")
	dir := fs.String("dir", "", "directory for everything this cluster writes (must be new or empty)")
	bin := fs.String("bin", "", "directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok")
	stages := fs.String("stages", "", "directory holding KWOK's stage files")
	nodes := fs.Int("nodes", 1, "KWOK nodes to create")
	owner := fs.Int("owner-pid", 0, "stop the cluster when this process exits")
	timeout := fs.Duration("timeout", 180*time.Second, "how long to wait for readiness")
	forward := fs.String("port-forward-to", "", "where KWOK sends port-forwarded connections (default: its own server)")
	parse(fs, args)
	if *name == "" || *dir == "" || *bin == "" || *stages == "" {
		usage("up needs --name, --dir, --bin and --stages")
	}
	if *nodes < 1 || *nodes > 1000 {
		usage("--nodes must be between 1 and 1000")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(abs); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: `up` needs a new or empty directory (a running cluster there? try `down --dir %s`)", abs, abs)
	}
	for _, d := range []string{"pki", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return err
		}
	}
	st := &state{Name: *name, Dir: abs, Ports: map[string]int{}, Pids: map[string]int{}}
	for _, p := range []string{"etcd-client", "etcd-peer", "apiserver", "kwok"} {
		port, err := freePort(st.Ports)
		if err != nil {
			return err
		}
		st.Ports[p] = port
	}
	st.Server = fmt.Sprintf("https://127.0.0.1:%d", st.Ports["apiserver"])
	pki, err := makePKI(filepath.Join(abs, "pki"), *name, st.Server)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	st.Kubeconfig = filepath.Join(abs, "kubeconfig")
	if err := copyFile(filepath.Join(abs, "pki", "admin.kubeconfig"), st.Kubeconfig); err != nil {
		return err
	}
	kwokConfig, err := writeKwokConfig(abs, *stages, *forward, st.Ports["kwok"])
	if err != nil {
		return fmt.Errorf("KWOK configuration: %w", err)
	}

	started := time.Now()
	failed := func(err error) error {
		stopAll(st)
		return fmt.Errorf("%w (logs in %s/logs)", err, abs)
	}
	p := func(f string) string { return filepath.Join(abs, "pki", f) }
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", st.Ports["etcd-client"])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", st.Ports["etcd-peer"])
	if err := start(st, *bin, "etcd",
		"--name", *name,
		"--data-dir", filepath.Join(abs, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", *name+"="+peerURL,
		// A test cluster on a shared disk: durability is not what is under test.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	); err != nil {
		return failed(err)
	}
	deadline := started.Add(*timeout)
	if err := poll(deadline, "etcd health", func() error { return httpOK(http.DefaultClient, etcdURL+"/health") }); err != nil {
		return failed(err)
	}
	if err := start(st, *bin, "kube-apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		// No default route on a test machine: the API server cannot pick its own address.
		"--advertise-address", "127.0.0.1",
		// Loopback is not a valid endpoint address for the `kubernetes` Service.
		"--endpoint-reconciler-type", "none",
		"--secure-port", strconv.Itoa(st.Ports["apiserver"]),
		"--tls-cert-file", p("apiserver.crt"), "--tls-private-key-file", p("apiserver.key"),
		"--client-ca-file", p("ca.crt"),
		"--authorization-mode", "Node,RBAC",
		"--service-account-key-file", p("sa.pub"),
		"--service-account-signing-key-file", p("sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--kubelet-client-certificate", p("apiserver-kubelet-client.crt"),
		"--kubelet-client-key", p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority", p("ca.crt"),
		"--kubelet-preferred-address-types", "InternalIP",
		"--allow-privileged=true",
		"--profiling=false",
	); err != nil {
		return failed(err)
	}
	admin := pki.client("admin")
	if err := poll(deadline, "kube-apiserver /readyz", func() error { return httpOK(admin, st.Server+"/readyz") }); err != nil {
		return failed(err)
	}
	if err := start(st, *bin, "kube-controller-manager",
		"--kubeconfig", p("controller-manager.kubeconfig"),
		"--authentication-kubeconfig", p("controller-manager.kubeconfig"),
		"--authorization-kubeconfig", p("controller-manager.kubeconfig"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file", p("sa.key"),
		"--root-ca-file", p("ca.crt"),
		"--cluster-signing-cert-file", p("ca.crt"), "--cluster-signing-key-file", p("ca.key"),
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--profiling=false",
	); err != nil {
		return failed(err)
	}
	if err := start(st, *bin, "kube-scheduler",
		"--kubeconfig", p("scheduler.kubeconfig"),
		"--authentication-kubeconfig", p("scheduler.kubeconfig"),
		"--authorization-kubeconfig", p("scheduler.kubeconfig"),
		"--leader-elect=false",
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--profiling=false",
	); err != nil {
		return failed(err)
	}
	if err := start(st, *bin, "kwok",
		"--kubeconfig", p("kwok.kubeconfig"),
		"--config", kwokConfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
		"--node-ip", "127.0.0.1",
		"--node-port", strconv.Itoa(st.Ports["kwok"]),
		"--server-address", fmt.Sprintf("127.0.0.1:%d", st.Ports["kwok"]),
		"--tls-cert-file", p("kwok-serving.crt"), "--tls-private-key-file", p("kwok-serving.key"),
		"--cidr", "10.244.0.0/16",
	); err != nil {
		return failed(err)
	}
	for i := 0; i < *nodes; i++ {
		node := fmt.Sprintf("%s-node-%d", *name, i)
		if err := poll(deadline, "node "+node+" created", func() error { return createNode(admin, st.Server, node) }); err != nil {
			return failed(err)
		}
	}
	if err := poll(deadline, fmt.Sprintf("%d nodes Ready", *nodes), func() error { return nodesReady(admin, st.Server, *nodes) }); err != nil {
		return failed(err)
	}
	// Pods need their namespace's default ServiceAccount: its presence shows the
	// controller manager is working.
	if err := poll(deadline, "the default ServiceAccount", func() error {
		return httpOK(admin, st.Server+"/api/v1/namespaces/default/serviceaccounts/default")
	}); err != nil {
		return failed(err)
	}
	st.ReadySeconds = time.Since(started).Seconds()
	if err := st.save(); err != nil {
		return failed(err)
	}
	if *owner > 0 {
		if err := spawnWatch(abs, *owner); err != nil {
			return failed(err)
		}
	}
	fmt.Printf("cluster %s ready in %.1fs: %s (kubeconfig %s)\n", *name, st.ReadySeconds, st.Server, st.Kubeconfig)
	return nil
}

// start runs one component in its own session, so that it outlives this launcher, with its
// output in DIR/logs.
func start(st *state, bin, name string, args ...string) error {
	logf, err := os.OpenFile(filepath.Join(st.Dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = st.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	st.Order = append(st.Order, name)
	st.Pids[name] = cmd.Process.Pid
	// Saved after every start, so a `down` after a failed `up` still finds everything.
	if err := st.save(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

func poll(deadline time.Time, what string, f func() error) error {
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s: %v", what, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func httpOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func createNode(c *http.Client, server, name string) error {
	node := map[string]any{
		"apiVersion": "v1",
		"kind":       "Node",
		"metadata": map[string]any{
			"name":        name,
			"annotations": map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			"labels": map[string]string{
				"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"type": "kwok",
			},
		},
		"status": map[string]any{
			"allocatable": map[string]string{"cpu": "32", "memory": "256Gi", "pods": "110"},
			"capacity":    map[string]string{"cpu": "32", "memory": "256Gi", "pods": "110"},
			"nodeInfo":    map[string]string{"architecture": "amd64", "operatingSystem": "linux"},
		},
	}
	b, _ := json.Marshal(node)
	resp, err := c.Post(server+"/api/v1/nodes", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusConflict {
		return nil
	}
	return fmt.Errorf("create node: %s %s", resp.Status, strings.TrimSpace(string(body)))
}

func nodesReady(c *http.Client, server string, want int) error {
	resp, err := c.Get(server + "/api/v1/nodes")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return err
	}
	ready := 0
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				ready++
			}
		}
	}
	if ready < want {
		return fmt.Errorf("%d of %d nodes Ready", ready, want)
	}
	return nil
}

// freePort picks a port below Linux's ephemeral range (32768+), so that no outgoing
// connection on this machine can be holding it when the component binds.
func freePort(taken map[string]int) (int, error) {
	for i := 0; i < 200; i++ {
		port := 20000 + mrand.IntN(12000)
		dup := false
		for _, p := range taken {
			dup = dup || p == port
		}
		if dup {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port found")
}

func writeKwokConfig(dir, stages, forward string, kwokPort int) (string, error) {
	var out bytes.Buffer
	// Nodes become Ready and keep a Lease; pods are scheduled, become Running and Ready,
	// complete (Jobs) and go away when deleted.
	for _, f := range []string{
		"node/fast/node-initialize.yaml",
		"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
		"pod/fast/pod-ready.yaml",
		"pod/fast/pod-complete.yaml",
		"pod/fast/pod-delete.yaml",
	} {
		b, err := os.ReadFile(filepath.Join(stages, f))
		if err != nil {
			return "", err
		}
		out.WriteString("---\n")
		out.Write(b)
		out.WriteString("\n")
	}
	logFile := filepath.Join(dir, "pod.log")
	// KWOK serves container logs from a file in the CRI log format.
	logs := "2026-01-01T00:00:00.000000000Z stdout F hello from a kwok pod\n" +
		"2026-01-01T00:00:01.000000000Z stdout F second line\n"
	if err := os.WriteFile(logFile, []byte(logs), 0o600); err != nil {
		return "", err
	}
	if forward == "" {
		forward = fmt.Sprintf("127.0.0.1:%d", kwokPort)
	}
	host, port, err := net.SplitHostPort(forward)
	if err != nil {
		return "", fmt.Errorf("--port-forward-to: %w", err)
	}
	fmt.Fprintf(&out, `---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: cluster-logs
spec:
  logs:
  - logsFile: %q
    follow: false
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: cluster-exec
spec:
  execs:
  - local:
      workDir: %q
      envs:
      - name: KWOK_EXEC
        value: "true"
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterAttach
metadata:
  name: cluster-attach
spec:
  attaches:
  - logsFile: %q
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata:
  name: cluster-port-forward
spec:
  forwards:
  - target:
      address: %q
      port: %s
`, logFile, dir, logFile, host, port)
	path := filepath.Join(dir, "kwok.yaml")
	return path, os.WriteFile(path, out.Bytes(), 0o600)
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	dir := fs.String("dir", "", "the directory given to up")
	keepLogs := fs.Bool("keep-logs", false, "leave DIR/logs in place")
	parse(fs, args)
	if *dir == "" {
		usage("down needs --dir")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	st, err := load(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing started there, or already down
	}
	if err != nil {
		return err
	}
	stopAll(st)
	entries, err := os.ReadDir(abs)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if *keepLogs && e.Name() == "logs" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(abs, e.Name())); err != nil {
			return err
		}
	}
	if !*keepLogs {
		return os.Remove(abs)
	}
	return nil
}

// stopAll stops the components in reverse start order: SIGTERM, then SIGKILL after 10 s.
func stopAll(st *state) {
	for i := len(st.Order) - 1; i >= 0; i-- {
		name := st.Order[i]
		pid := st.Pids[name]
		if !ours(pid, st.Dir, name) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for ours(pid, st.Dir, name) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if ours(pid, st.Dir, name) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// ours says whether pid is still the component this launcher started (not a zombie, and not
// a recycled pid): its command line names the binary and the cluster's directory.
func ours(pid int, dir, name string) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(name)) && bytes.Contains(cmdline, []byte(dir))
}

func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	dir := fs.String("dir", "", "the directory given to up")
	parse(fs, args)
	if *dir == "" {
		usage("status needs --dir")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	st, err := load(abs)
	if err != nil {
		return err
	}
	fmt.Printf("cluster %s: %s, ready in %.1fs\n", st.Name, st.Server, st.ReadySeconds)
	total := 0
	for _, name := range st.Order {
		pid := st.Pids[name]
		rss := rssKiB(pid)
		total += rss
		state := "running"
		if !ours(pid, st.Dir, name) {
			state = "stopped"
		}
		fmt.Printf("%-24s pid %-8d %-8s %7.1f MiB\n", name, pid, state, float64(rss)/1024)
	}
	fmt.Printf("%-24s %26.1f MiB\n", "total RSS", float64(total)/1024)
	return nil
}

func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// spawnWatch starts `watch` in its own session: it takes the cluster down when the owner
// process exits, so an interrupted test run leaves nothing behind.
func spawnWatch(dir string, owner int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "watch", "--dir", dir, "--pid", strconv.Itoa(owner))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd.Start()
}

func watch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	dir := fs.String("dir", "", "")
	pid := fs.Int("pid", 0, "")
	parse(fs, args)
	for {
		time.Sleep(time.Second)
		if _, err := os.Stat(filepath.Join(*dir, "cluster.json")); err != nil {
			return nil // taken down already
		}
		if syscall.Kill(*pid, 0) != nil {
			return down([]string{"--dir", *dir})
		}
	}
}

// --- certificates ------------------------------------------------------------------------

type pkiSet struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	server string
}

func makePKI(dir, name, server string) (*pkiSet, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tether-real-cluster " + name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	s := &pkiSet{dir: dir, ca: ca, caKey: key, server: server}
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), s.caPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, "ca.key"), key); err != nil {
		return nil, err
	}
	serving := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if err := s.issue("apiserver", "kube-apiserver", nil, serving, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}); err != nil {
		return nil, err
	}
	if err := s.issue("kwok-serving", "kwok-kubelet", nil, []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, err
	}
	clients := []struct{ file, cn, org string }{
		{"admin", "kubernetes-admin", "system:masters"},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		// KWOK writes the status of every node and pod: it plays all the kubelets.
		{"kwok", "kwok-controller", "system:masters"},
	}
	for _, c := range clients {
		var orgs []string
		if c.org != "" {
			orgs = []string{c.org}
		}
		if err := s.issue(c.file, c.cn, orgs, nil, nil); err != nil {
			return nil, err
		}
		if err := s.kubeconfig(c.file, name); err != nil {
			return nil, err
		}
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, "sa.key"), saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	return s, os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func (s *pkiSet) issue(file, cn string, orgs, dns []string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if len(dns)+len(ips) > 0 {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, file+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeKey(filepath.Join(s.dir, file+".key"), key)
}

func (s *pkiSet) kubeconfig(file, cluster string) error {
	cert, err := os.ReadFile(filepath.Join(s.dir, file+".crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(filepath.Join(s.dir, file+".key"))
	if err != nil {
		return err
	}
	b64 := base64.StdEncoding.EncodeToString
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
users:
- name: %[4]s
  user:
    client-certificate-data: %[5]s
    client-key-data: %[6]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: %[4]s
current-context: %[1]s
`, cluster, s.server, b64(s.caPEM), file, b64(cert), b64(key))
	return os.WriteFile(filepath.Join(s.dir, file+".kubeconfig"), []byte(cfg), 0o600)
}

// client is an HTTPS client with the named client certificate, trusting only the CA.
func (s *pkiSet) client(file string) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.ca)
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.dir, file+".crt"), filepath.Join(s.dir, file+".key"))
	if err != nil {
		panic(err) // written a moment ago by makePKI
	}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pool,
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		}},
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}
