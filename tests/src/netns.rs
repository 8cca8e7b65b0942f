//! Network topologies for tests, made of network namespaces (iproute2 + nftables, as root).
//!
//! [`Topology::nat`] builds a hub host, a router that masquerades, and an edge host on a
//! private subnet behind it: the edge can reach the hub, the hub cannot reach the edge. Only
//! addresses inside the namespaces it creates are used, and everything is torn down on drop
//! (also when a test fails).

use std::process::Command;

use crate::harness::{run, stderr};

pub const HUB_IP: &str = "10.77.1.1";
pub const ROUTER_HUB_SIDE_IP: &str = "10.77.1.254";
pub const ROUTER_EDGE_SIDE_IP: &str = "192.168.77.1";
pub const EDGE_IP: &str = "192.168.77.2";

/// Whether tests that need root may run. Without root they skip, except under `CI=true`,
/// where skipping would hide a gap: they fail.
pub fn root_available(test: &str) -> bool {
    let root = run(Command::new("id").arg("-u")).stdout.starts_with(b"0");
    let tools = run(Command::new("sh").args(["-c", "command -v ip && command -v nft"]))
        .status
        .success();
    if root && tools {
        return true;
    }
    let why = if root {
        "ip or nft is missing"
    } else {
        "not running as root"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: needs network namespaces but {why} (CI=true: not skipping)");
    }
    eprintln!("SKIPPED {test}: needs network namespaces but {why}");
    false
}

/// Three namespaces: `hub`, `router` (masquerading) and `edge`.
#[derive(Debug)]
pub struct Topology {
    pub hub: String,
    pub router: String,
    pub edge: String,
    /// The router's interface towards the edge: taking it down partitions the edge.
    edge_link: String,
}

fn ip(args: &[&str]) {
    let out = run(Command::new("ip").args(args));
    assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
}

fn unique() -> String {
    let n = std::process::id() as u64 * 1_000_003
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    format!("{:05x}", n % 0xfffff)
}

impl Topology {
    /// Builds the topology. The edge's default route goes through the router, which
    /// masquerades it toward the hub; the hub has no route to the edge's subnet.
    pub fn nat() -> Topology {
        let p = format!("t{}", unique());
        let t = Topology {
            hub: format!("{p}-hub"),
            router: format!("{p}-rtr"),
            edge: format!("{p}-edge"),
            edge_link: format!("{p}re"),
        };
        for ns in [&t.hub, &t.router, &t.edge] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (hub_if, rtr_hub_if, edge_if) = (format!("{p}h"), format!("{p}rh"), format!("{p}e"));
        ip(&[
            "link",
            "add",
            &hub_if,
            "netns",
            &t.hub,
            "type",
            "veth",
            "peer",
            "name",
            &rtr_hub_if,
            "netns",
            &t.router,
        ]);
        ip(&[
            "link",
            "add",
            &edge_if,
            "netns",
            &t.edge,
            "type",
            "veth",
            "peer",
            "name",
            &t.edge_link,
            "netns",
            &t.router,
        ]);
        for (ns, dev, addr) in [
            (&t.hub, &hub_if, format!("{HUB_IP}/24")),
            (&t.router, &rtr_hub_if, format!("{ROUTER_HUB_SIDE_IP}/24")),
            (&t.router, &t.edge_link, format!("{ROUTER_EDGE_SIDE_IP}/24")),
            (&t.edge, &edge_if, format!("{EDGE_IP}/24")),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &t.edge,
            "route",
            "add",
            "default",
            "via",
            ROUTER_EDGE_SIDE_IP,
        ]);
        let out = run(Command::new("ip").args([
            "netns",
            "exec",
            &t.router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]));
        assert!(out.status.success(), "sysctl: {}", stderr(&out));
        let nft = |args: &[&str]| {
            let out = run(Command::new("ip")
                .args(["netns", "exec", &t.router, "nft"])
                .args(args));
            assert!(out.status.success(), "nft {args:?}: {}", stderr(&out));
        };
        nft(&["add", "table", "ip", "nat"]);
        nft(&[
            "add",
            "chain",
            "ip",
            "nat",
            "post",
            "{ type nat hook postrouting priority 100 ; }",
        ]);
        nft(&[
            "add",
            "rule",
            "ip",
            "nat",
            "post",
            "oifname",
            &rtr_hub_if,
            "masquerade",
        ]);
        t
    }

    /// Cuts the link between the router and the edge.
    pub fn cut_edge(&self) {
        ip(&["-n", &self.router, "link", "set", &self.edge_link, "down"]);
    }

    pub fn restore_edge(&self) {
        ip(&["-n", &self.router, "link", "set", &self.edge_link, "up"]);
    }

    /// Tries a TCP connection from namespace `from` to `addr`; true if it connected.
    pub fn can_connect(&self, from: &str, addr: &str) -> bool {
        let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
        let script = format!(
            "import socket,sys\ns=socket.socket()\ns.settimeout(2)\ntry:\n s.connect(('{host}',{port})); sys.exit(0)\nexcept Exception as e:\n print(e); sys.exit(1)\n"
        );
        run(Command::new("ip").args(["netns", "exec", from, "python3", "-c", &script]))
            .status
            .success()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.edge, &self.router, &self.hub] {
            let _ = run(Command::new("ip").args(["netns", "del", ns]));
        }
    }
}

/// One namespace joined to the root namespace by a veth pair: `host_ip` on the root side,
/// `ns_ip` inside. What runs inside can be cut off from ports on the root side with nftables
/// in the namespace (other traffic keeps flowing). Removed on drop.
#[derive(Debug)]
pub struct Pair {
    pub ns: String,
    pub host_ip: String,
    pub ns_ip: String,
    host_if: String,
}

impl Pair {
    /// On 10.78.1.0/24 (used by no other test).
    pub fn up() -> Pair {
        let p = format!("p{}", unique());
        let pair = Pair {
            ns: format!("{p}-ns"),
            host_ip: "10.78.1.1".into(),
            ns_ip: "10.78.1.2".into(),
            host_if: format!("{p}h"),
        };
        ip(&["netns", "add", &pair.ns]);
        ip(&["-n", &pair.ns, "link", "set", "lo", "up"]);
        let (host_if, ns_if) = (format!("{p}h"), format!("{p}n"));
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &pair.ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", pair.host_ip),
            "dev",
            &host_if,
        ]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &pair.ns,
            "addr",
            "add",
            &format!("{}/24", pair.ns_ip),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &pair.ns, "link", "set", &ns_if, "up"]);
        pair
    }

    fn nft(&self, args: &[&str]) {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.ns, "nft"])
            .args(args));
        assert!(out.status.success(), "nft {args:?}: {}", stderr(&out));
    }

    /// Drops every packet from the namespace to `host_ip` on these TCP ports.
    pub fn cut(&self, ports: &[u16]) {
        let set = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.nft(&["add", "table", "inet", "cut"]);
        self.nft(&[
            "add",
            "chain",
            "inet",
            "cut",
            "out",
            "{ type filter hook output priority 0 ; }",
        ]);
        self.nft(&[
            "add",
            "rule",
            "inet",
            "cut",
            "out",
            "ip",
            "daddr",
            &self.host_ip,
            "tcp",
            "dport",
            &format!("{{ {set} }}"),
            "drop",
        ]);
    }

    pub fn heal(&self) {
        self.nft(&["delete", "table", "inet", "cut"]);
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it, but only once nothing runs in
        // it any more: take the root side down explicitly so the address is free at once.
        let _ = run(Command::new("ip").args(["link", "del", &self.host_if]));
        let _ = run(Command::new("ip").args(["netns", "del", &self.ns]));
    }
}
