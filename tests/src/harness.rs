//! Real processes for end-to-end tests: a hub, emulated member clusters and agents, each in
//! its own scratch directory with its log captured, killed when the test ends. Waiting is
//! always polling against a deadline ([`eventually`]), never a bare sleep.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        // A poll interval inside a deadline loop, not synchronisation.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory holding the workspace's built binaries (next to this test's `deps/`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary; panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// Whether Python with the Helm SDK (helm-python-sdk, PyYAML) is here; if not, the caller
/// skips, except under CI, where the test command installs it and its absence is a failure.
pub fn helm_python() -> bool {
    python_has("helm_python, yaml", "helm-python-sdk pyyaml")
}

/// Whether `python3 -c "import MODULES"` works; if not, the caller skips, except under CI,
/// where the test command installs the packages and their absence is a failure.
pub fn python_has(modules: &str, packages: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 cannot import {modules} (./scripts/test installs {packages})"
        );
        eprintln!("skipping: pip install {packages}");
    }
    ok
}

/// A free TCP port on loopback for a server a test starts (bound and released), reserved for
/// this test process's whole life.
///
/// Chosen below the kernel's ephemeral range (32768-60999 by default), so the many outgoing
/// connections of parallel tests, whose local ports come from that range, can never occupy it
/// between this check and the server's bind; a random start keeps parallel test processes
/// apart. A bind check alone is not enough: a test that stops a server and starts it again on
/// the same port leaves the port free in between, and another test process (nextest runs each
/// test in its own) could take it — CI saw a restarted hub find its port held by another test's
/// hub, and its agents meet that hub's CA. So each port handed out is also locked (an advisory
/// `flock` on a file named after it in a shared directory) until this process exits, and no
/// other test process hands out a locked port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // The lock files stay open (and so locked) until the process exits.
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let locks = std::env::temp_dir().join("tether-test-ports");
    let _ = std::fs::create_dir_all(&locks);
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(n.wrapping_mul(7)) % SPAN) as u16;
        // A lock file that cannot be made (a directory another user owns) leaves the bind
        // check alone, as before.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(locks.join(format!("{port}.lock")))
            .ok();
        if lock.as_ref().is_some_and(|l| l.try_lock().is_err()) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            if let Some(lock) = lock {
                HELD.lock().unwrap_or_else(|e| e.into_inner()).push(lock);
            }
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A running child process whose output goes to a log file. Killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone log handle: {e}"));
        let child = cmd
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`"KILL"`, `"TERM"`, `"STOP"`, `"CONT"`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// The exit code if the process has ended.
    pub fn exited(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Waits for the process to end and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let name = self.name.clone();
        eventually(timeout, &format!("{name} to exit"), || self.exited())
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) -> i32 {
        self.signal("TERM");
        let code = self.wait_exit(Duration::from_secs(20));
        self.child = None;
        code
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!(
                "---- last lines of {} ({}) ----",
                self.name,
                self.log.display()
            );
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        self.kill();
    }
}

/// `program`, run inside network namespace `netns` when given.
pub fn command(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// `producer | consumer`, through a real pipe as a shell makes it; the consumer's output.
/// Panics if the producer fails (its output would be no test of the consumer).
pub fn pipe(producer: &mut Command, consumer: &mut Command) -> Output {
    let mut first = producer
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {producer:?}: {e}"));
    let Some(through) = first.stdout.take() else {
        panic!("{producer:?} has no stdout pipe");
    };
    let out = consumer
        .stdin(Stdio::from(through))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {consumer:?}: {e}"));
    let produced = first
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {producer:?}: {e}"));
    assert!(
        produced.status.success(),
        "{producer:?} failed: {}",
        stderr(&produced)
    );
    out
}

/// Runs a command with `input` on its standard input.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        // A consumer that stops reading early closes the pipe: not this helper's failure.
        let _ = stdin.write_all(input);
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {cmd:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Settings of a hub under test.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub heartbeat_interval: String,
    pub offline_grace: String,
    pub cert_lifetime: String,
    /// `RUST_LOG` for the hub.
    pub log: String,
    pub extra: Vec<String>,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            heartbeat_interval: "300ms".into(),
            offline_grace: "2s".into(),
            cert_lifetime: "1h".into(),
            log: "info".into(),
            extra: Vec::new(),
        }
    }
}

/// Where one hub of an etcd group runs: its namespace (if any), its address, and the
/// `--etcd-*` flags that reach etcd from there.
#[derive(Debug, Clone)]
pub struct HubSpec {
    pub netns: Option<String>,
    pub ip: String,
    pub etcd_flags: Vec<String>,
}

/// `flags` with the `--etcd-endpoints` value moved to loopback (the same members), for
/// commands run outside any namespace.
fn local_endpoints(flags: &[String]) -> Vec<String> {
    let mut out = flags.to_vec();
    if let Some(i) = out.iter().position(|f| f == "--etcd-endpoints")
        && let Some(v) = out.get_mut(i + 1)
    {
        *v = v
            .split(',')
            .map(|e| match e.rsplit_once(':') {
                Some((_, port)) => format!("https://127.0.0.1:{port}"),
                None => e.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
    }
    out
}

/// A hub process and its data directory.
pub struct Hub {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub opts: HubOptions,
    pub proc: Option<Proc>,
    /// The network namespace the hub runs in (its commands run there too).
    pub netns: Option<String>,
    starts: u32,
}

impl Hub {
    /// `tether-hub init` in `dir` (advertising a free loopback port), then `serve`.
    pub fn start(dir: &Path, opts: HubOptions) -> Hub {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .unwrap_or_else(|_| unreachable!());
        Hub::start_at(dir, opts, None, addr, metrics)
    }

    /// A hub inside network namespace `netns`, listening on `ip`.
    pub fn start_in(dir: &Path, opts: HubOptions, netns: &str, ip: &str) -> Hub {
        let addr: SocketAddr = format!("{ip}:7443")
            .parse()
            .unwrap_or_else(|_| panic!("bad ip {ip}"));
        let metrics: SocketAddr = format!("{ip}:9464")
            .parse()
            .unwrap_or_else(|_| panic!("bad ip {ip}"));
        Hub::start_at(dir, opts, Some(netns.to_string()), addr, metrics)
    }

    fn start_at(
        dir: &Path,
        opts: HubOptions,
        netns: Option<String>,
        addr: SocketAddr,
        metrics: SocketAddr,
    ) -> Hub {
        let mut hub = Hub::init_at(dir, opts, netns, addr, metrics, &[]);
        hub.serve();
        hub
    }

    fn init_at(
        dir: &Path,
        opts: HubOptions,
        netns: Option<String>,
        addr: SocketAddr,
        metrics: SocketAddr,
        extra_sans: &[String],
    ) -> Hub {
        let mut init = Command::new(bin("tether-hub"));
        init.args(["init", "--data-dir"]).arg(dir);
        for san in extra_sans {
            init.args(["--san", san]);
        }
        let out = run(init
            .args(["--san", &addr.ip().to_string()])
            .args(["--advertise", &addr.to_string()]));
        assert!(out.status.success(), "hub init failed: {}", stderr(&out));
        Hub {
            dir: dir.to_path_buf(),
            addr,
            metrics,
            opts,
            proc: None,
            netns,
            starts: 0,
        }
    }

    /// `n` hubs on one etcd prefix, on loopback (see [`Hub::etcd_group_with`]).
    pub fn etcd_group(base: &Path, n: usize, etcd_flags: &[String], opts: HubOptions) -> Vec<Hub> {
        let specs: Vec<HubSpec> = (0..n)
            .map(|_| HubSpec {
                netns: None,
                ip: "127.0.0.1".into(),
                etcd_flags: etcd_flags.to_vec(),
            })
            .collect();
        Hub::etcd_group_with(base, &specs, opts)
    }

    /// Hubs on one etcd prefix, as an operator sets them up: the first is initialised (with
    /// every hub's address in its certificate) and its store moved onto etcd with `tether-hub
    /// migrate` (its `store.redb` then removed, so nothing can fall back to it); the others
    /// get a copy of its data directory (CA, serving certificate, admin credential), each
    /// admin credential pointing at its own hub. The first serves; the others stand by.
    pub fn etcd_group_with(base: &Path, specs: &[HubSpec], opts: HubOptions) -> Vec<Hub> {
        let at = |spec: &HubSpec| -> (SocketAddr, SocketAddr) {
            let (tls, metrics) = match spec.netns {
                Some(_) => (7443, 9464),
                None => (free_port(), free_port()),
            };
            let parse = |port: u16| -> SocketAddr {
                format!("{}:{port}", spec.ip)
                    .parse()
                    .unwrap_or_else(|_| panic!("bad ip {}", spec.ip))
            };
            (parse(tls), parse(metrics))
        };
        let with_flags = |spec: &HubSpec| {
            let mut o = opts.clone();
            o.extra.extend(["--store".to_string(), "etcd".to_string()]);
            o.extra.extend(spec.etcd_flags.iter().cloned());
            o
        };
        let first = base.join("hub0");
        let (addr, metrics) = at(&specs[0]);
        let sans: Vec<String> = specs.iter().map(|s| s.ip.clone()).collect();
        let mut hubs = vec![Hub::init_at(
            &first,
            with_flags(&specs[0]),
            specs[0].netns.clone(),
            addr,
            metrics,
            &sans,
        )];
        let out = run(Command::new(bin("tether-hub"))
            .args(["migrate", "--to-etcd", "--from-data-dir"])
            .arg(&first)
            .args(local_endpoints(&specs[0].etcd_flags)));
        assert!(out.status.success(), "migrate failed: {}", stderr(&out));
        std::fs::remove_file(first.join("store.redb")).unwrap_or_else(|e| panic!("{e}"));
        let admin = std::fs::read_to_string(first.join("admin.yaml")).unwrap_or_default();
        for (i, spec) in specs.iter().enumerate().skip(1) {
            let dir = base.join(format!("hub{i}"));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .unwrap_or_else(|e| panic!("{e}"));
            for f in ["ca.crt", "ca.key", "hub.crt", "hub.key"] {
                std::fs::copy(first.join(f), dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            }
            let (addr, metrics) = at(spec);
            let hub = Hub {
                dir: dir.clone(),
                addr,
                metrics,
                opts: with_flags(spec),
                proc: None,
                netns: spec.netns.clone(),
                starts: 0,
            };
            let own = admin.replace(&hubs[0].addr.to_string(), &hub.addr.to_string());
            std::fs::write(dir.join("admin.yaml"), own).unwrap_or_else(|e| panic!("{e}"));
            std::fs::set_permissions(
                dir.join("admin.yaml"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            hubs.push(hub);
        }
        hubs[0].serve();
        for h in &mut hubs[1..] {
            h.serve_standby();
        }
        hubs
    }

    /// A hub for a data directory that already holds one (restored, say), on free loopback
    /// ports; not started.
    pub fn existing(dir: &Path, opts: HubOptions) -> Hub {
        let loopback = |port: u16| -> SocketAddr {
            format!("127.0.0.1:{port}")
                .parse()
                .unwrap_or_else(|_| unreachable!())
        };
        Hub {
            dir: dir.to_path_buf(),
            addr: loopback(free_port()),
            metrics: loopback(free_port()),
            opts,
            proc: None,
            netns: None,
            starts: 0,
        }
    }

    /// Writes to `path` the first hub's admin credential with every hub listed (as tetherctl
    /// takes several), and returns `path`.
    pub fn config_listing(hubs: &[Hub], path: &Path) -> PathBuf {
        let admin = std::fs::read_to_string(hubs[0].admin_config())
            .unwrap_or_else(|e| panic!("cannot read the admin credential: {e}"));
        let listed = admin.replace(&hubs[0].addr.to_string(), &Hub::addresses(hubs));
        std::fs::write(path, listed)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path.to_path_buf()
    }

    /// The addresses of `hubs`, as an agent's `--hub` takes several.
    pub fn addresses(hubs: &[Hub]) -> String {
        hubs.iter()
            .map(|h| h.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn http(&self, path: &str) -> (u16, String) {
        match &self.netns {
            None => http_get(self.metrics, path),
            Some(ns) => http_get_in(ns, self.metrics, path),
        }
    }

    /// Starts `serve` and waits for `/readyz`.
    pub fn serve(&mut self) {
        self.spawn();
        eventually(Duration::from_secs(20), "hub /readyz", || {
            (self.http("/readyz").0 == 200).then_some(())
        });
    }

    /// Starts `serve` for a hub that stands by (etcd): waits for `/healthz` only.
    pub fn serve_standby(&mut self) {
        self.spawn();
        eventually(Duration::from_secs(20), "hub /healthz", || {
            (self.http("/healthz").0 == 200).then_some(())
        });
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut cmd = command(self.netns.as_deref(), bin("tether-hub"));
        cmd.args(["serve", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen", &self.addr.to_string()])
            .args(["--metrics-listen", &self.metrics.to_string()])
            .args(["--heartbeat-interval", &self.opts.heartbeat_interval])
            .args(["--offline-grace", &self.opts.offline_grace])
            .args(["--cert-lifetime", &self.opts.cert_lifetime])
            .args(&self.opts.extra)
            .env("RUST_LOG", &self.opts.log);
        let log = self.dir.with_extension(format!("hub-{}.log", self.starts));
        self.proc = Some(Proc::spawn("tether-hub", &mut cmd, log));
    }

    pub fn admin_config(&self) -> PathBuf {
        self.dir.join("admin.yaml")
    }

    /// Runs tetherctl with the admin credential.
    pub fn ctl(&self, args: &[&str]) -> Output {
        run(&mut self.ctl_command(args))
    }

    /// tetherctl with the admin credential, not yet run (to pipe into).
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = command(self.netns.as_deref(), bin("tetherctl"));
        cmd.arg("--config").arg(self.admin_config()).args(args);
        cmd
    }

    /// Creates hub user `name` with `role` and returns the path of its tetherctl config.
    pub fn user_config(&self, name: &str, role: &str) -> PathBuf {
        let config = self.dir.with_extension(format!("user-{name}.yaml"));
        let out = self.ctl(&[
            "user",
            "create",
            name,
            "--role",
            role,
            "-o",
            &config.display().to_string(),
        ]);
        assert!(out.status.success(), "user create {name}: {}", stderr(&out));
        config
    }

    /// Runs tetherctl, asserts success, and parses its `-o json` output.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.ctl(&all);
        assert!(
            out.status.success(),
            "tetherctl {args:?} failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("tetherctl {args:?} printed no JSON ({e}): {}", stdout(&out))
        })
    }

    /// A fresh join token for `cluster`: (token, ca_pin).
    pub fn token(&self, cluster: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["token", "create", "--cluster", cluster];
        args.extend(extra);
        let v = self.ctl_json(&args);
        (
            v["token"].as_str().unwrap_or_default().to_string(),
            v["caPin"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// A cluster as `cluster get -o json` shows it, if it exists.
    pub fn cluster(&self, name: &str) -> Option<Value> {
        let out = self.ctl(&["cluster", "get", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    pub fn status_of(&self, name: &str) -> String {
        self.cluster(name)
            .and_then(|c| c["status"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits until `name` shows `status`.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> Value {
        eventually(timeout, &format!("cluster {name} to be {status}"), || {
            self.cluster(name).filter(|c| c["status"] == status)
        })
    }

    /// The status code of the hub's `/readyz` (0 when nothing answers).
    pub fn readyz(&self) -> u16 {
        self.http("/readyz").0
    }

    /// The hub's metrics text.
    pub fn metrics_text(&self) -> String {
        self.http("/metrics").1
    }

    /// One metric's value (-1 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics_text(), name)
    }

    /// Whether this hub serves (with etcd: holds the lease). `/readyz` does not tell: a hub
    /// that relays to the serving one is ready too.
    pub fn serving(&self) -> bool {
        self.metric("tether_hub_serving") == 1.0
    }

    /// Writes `yaml` to a file next to the hub's data and runs `tetherctl apply -f` on it.
    pub fn apply(&self, name: &str, yaml: &str) -> Output {
        let path = self.dir.with_extension(format!("{name}.yaml"));
        if let Err(e) = std::fs::write(&path, yaml) {
            panic!("cannot write {}: {e}", path.display());
        }
        self.ctl(&["apply", "-f", &path.display().to_string()])
    }

    /// Like [`Hub::apply`], asserting success.
    pub fn apply_ok(&self, name: &str, yaml: &str) {
        let out = self.apply(name, yaml);
        assert!(
            out.status.success(),
            "apply {name} failed: {}",
            stderr(&out)
        );
    }

    /// `tetherctl status NAME -o json`, if the workload exists.
    pub fn workload_status(&self, name: &str) -> Option<Value> {
        let out = self.ctl(&["status", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// One cluster's entry in `status NAME`.
    pub fn cluster_status(&self, workload: &str, cluster: &str) -> Option<Value> {
        self.workload_status(workload)?["clusters"]
            .as_array()?
            .iter()
            .find(|c| c["cluster"] == cluster)
            .cloned()
    }

    /// `tetherctl wait NAME --for available`, asserting success.
    pub fn wait_available(&self, name: &str, timeout: &str) {
        let out = self.ctl(&["wait", name, "--for", "available", "--timeout", timeout]);
        assert!(
            out.status.success(),
            "wait {name}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> i32 {
        self.proc.as_mut().map_or(0, Proc::stop)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill();
        }
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }
}

/// A member cluster: an emulated one (`tether-kube-emulator`), or a real control plane
/// ([`crate::real::start`]).
pub struct Cluster {
    pub kubeconfig: PathBuf,
    /// The emulator process (none for a real cluster).
    pub proc: Option<Proc>,
    pub netns: Option<String>,
    /// The kubectl to drive it with: the machine's for the emulator, the one built with the
    /// real control plane (same version) for a real cluster.
    pub kubectl: PathBuf,
    /// Takes a real cluster down when dropped.
    pub real: Option<crate::real::RealCluster>,
}

impl Cluster {
    pub fn start(dir: &Path, name: &str, nodes: u32, version: &str) -> Cluster {
        Cluster::start_with(dir, name, nodes, version, "300ms")
    }

    /// With workload objects becoming ready `ready_after` after a change ("never": not at all).
    pub fn start_with(
        dir: &Path,
        name: &str,
        nodes: u32,
        version: &str,
        ready_after: &str,
    ) -> Cluster {
        Cluster::start_in(dir, name, nodes, version, ready_after, None)
    }

    /// In network namespace `netns` (listening on its loopback).
    pub fn start_in(
        dir: &Path,
        name: &str,
        nodes: u32,
        version: &str,
        ready_after: &str,
        netns: Option<&str>,
    ) -> Cluster {
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        let mut cmd = command(netns, bin("tether-kube-emulator"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--name",
            name,
            "--nodes",
            &nodes.to_string(),
        ])
        .args([
            "--kubernetes-version",
            version,
            "--ready-after",
            ready_after,
        ])
        .arg("--kubeconfig-out")
        .arg(&kubeconfig);
        let proc = Proc::spawn(
            &format!("emulator {name}"),
            &mut cmd,
            dir.join(format!("{name}.emulator.log")),
        );
        let kc = kubeconfig.clone();
        eventually(Duration::from_secs(10), "emulator kubeconfig", || {
            kc.exists().then_some(())
        });
        Cluster {
            kubeconfig,
            proc: Some(proc),
            netns: netns.map(str::to_string),
            kubectl: PathBuf::from("kubectl"),
            real: None,
        }
    }

    /// Runs the real kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        run(command(self.netns.as_deref(), &self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }

    /// The object as JSON, or `None` if it does not exist.
    pub fn get(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["get"];
        all.extend(args);
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

/// An agent process.
pub struct Agent {
    pub state_dir: PathBuf,
    pub proc: Proc,
}

impl Agent {
    /// Starts `tether-agent --hub HUB --kubeconfig KC --state-dir STATE [args]`.
    pub fn start(hub: &Hub, cluster: &Cluster, state_dir: &Path, args: &[&str]) -> Agent {
        Agent::start_logged(hub, cluster, state_dir, args, "info")
    }

    /// With `RUST_LOG=log`.
    pub fn start_logged(
        hub: &Hub,
        cluster: &Cluster,
        state_dir: &Path,
        args: &[&str],
        log: &str,
    ) -> Agent {
        Agent::start_to(&hub.addr.to_string(), cluster, state_dir, args, log)
    }

    /// An agent given `hubs` (one address, or several comma-separated).
    pub fn start_to(
        hubs: &str,
        cluster: &Cluster,
        state_dir: &Path,
        args: &[&str],
        log: &str,
    ) -> Agent {
        let mut cmd = command(cluster.netns.as_deref(), bin("tether-agent"));
        cmd.args(["--hub", hubs])
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--reconnect-max-delay", "2s"])
            .args(["--progress-interval", "200ms"])
            .args(args)
            .env("RUST_LOG", log)
            .env_remove("KUBERNETES_SERVICE_HOST");
        let n = std::fs::read_dir(state_dir.parent().unwrap_or(state_dir)).map_or(0, |d| d.count());
        let log = state_dir.with_extension(format!("agent-{n}.log"));
        Agent {
            state_dir: state_dir.to_path_buf(),
            proc: Proc::spawn("tether-agent", &mut cmd, log),
        }
    }

    /// Starts an agent that joins with a token.
    pub fn join(hub: &Hub, cluster: &Cluster, state_dir: &Path, token: &str, pin: &str) -> Agent {
        Agent::start(
            hub,
            cluster,
            state_dir,
            &["--token", token, "--ca-pin", pin],
        )
    }
}

/// An agent as one pod of the agent DaemonSet runs it: credential and desired state in Secrets
/// of `tether-system`, leader election on the `tether-system/tether-agent` Lease (3 s), and
/// a metrics port.
pub struct ElectedAgent {
    pub proc: Proc,
    pub metrics: SocketAddr,
}

impl ElectedAgent {
    /// Starts the pod called `name` that joins with `join` = (token, CA pin).
    pub fn start(
        hub: &Hub,
        cluster: &Cluster,
        dir: &Path,
        name: &str,
        join: (&str, &str),
    ) -> ElectedAgent {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .unwrap_or_else(|_| unreachable!());
        let mut cmd = command(cluster.netns.as_deref(), bin("tether-agent"));
        cmd.args(["--hub", &hub.addr.to_string()])
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["--token", join.0, "--ca-pin", join.1])
            .args([
                "--credential-secret",
                "tether-system/tether-agent-credential",
            ])
            .args(["--namespace", "tether-system"])
            .args(["--leader-elect", "--leader-identity", name])
            .args(["--lease", "tether-system/tether-agent"])
            .args(["--lease-duration", "3s", "--lease-renew-deadline", "2s"])
            .args(["--lease-retry-period", "250ms"])
            .args(["--metrics-listen", &metrics.to_string()])
            .args([
                "--reconnect-max-delay",
                "1s",
                "--progress-interval",
                "200ms",
                "--resync-interval",
                "2s",
            ])
            .env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAME");
        let proc = Proc::spawn(
            &format!("agent {name}"),
            &mut cmd,
            dir.join(format!("{name}.log")),
        );
        ElectedAgent { proc, metrics }
    }

    /// One of the agent's metrics (-1 when absent or not answering).
    pub fn metric(&self, name: &str) -> f64 {
        metric(&http_get(self.metrics, "/metrics").1, name)
    }
}

/// Who holds the agents' Lease in `tether-system`.
pub fn lease_holder(cluster: &Cluster) -> Option<String> {
    cluster
        .get(&["lease", "tether-agent", "-n", "tether-system"])?
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// [`http_get`] from inside a network namespace (through python3 there).
pub fn http_get_in(netns: &str, addr: SocketAddr, path: &str) -> (u16, String) {
    let script = format!(
        "import urllib.request,sys\ntry:\n r=urllib.request.urlopen('http://{addr}{path}',timeout=3); sys.stdout.write(str(r.status)+'\\n'+r.read().decode())\nexcept urllib.error.HTTPError as e:\n sys.stdout.write(str(e.code)+'\\n')\nexcept Exception:\n sys.stdout.write('0\\n')\n"
    );
    let out = run(Command::new("ip").args(["netns", "exec", netns, "python3", "-c", &script]));
    let text = stdout(&out);
    let (code, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A value from Prometheus text (-1 when absent).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

/// A minimal HTTP/1.1 GET on loopback: (status, body). 0 when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}
