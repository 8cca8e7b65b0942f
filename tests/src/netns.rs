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
