//! A Kubernetes API emulator that speaks real HTTP, for the agent and the real `kubectl`.
//!
//! No kube-apiserver can be installed on the machines this project is built on, so member
//! clusters are emulated: discovery (plain and aggregated), CRUD for any resource including
//! CRDs and their custom resources, label and field selectors, watch, the status subresource,
//! merge and JSON patch, server-side apply with managed fields and conflicts, and `Table`
//! output for kubectl. It is a test tool (the fast suite, the quick start, the load
//! generator) and never ships; it depends on nothing of Tether. docs/emulator.md says what it
//! still lacks compared with a real API server.
//!
//! Start at [`Emulator::serve`]; requests are routed in [`http`], objects kept in [`store`].

pub mod apply;
pub mod defaults;
pub mod error;
pub mod http;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod selector;
pub mod store;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use self::resources::ResourceType;
use self::store::Store;

/// How an emulated cluster looks.
#[derive(Debug, Clone)]
pub struct Options {
    /// `gitVersion` reported by `/version` and the nodes' kubelets.
    pub kubernetes_version: String,
    pub nodes: u32,
    /// Deployments, StatefulSets, DaemonSets and Jobs report ready (complete) this long after
    /// their spec changes; `None` leaves them unready.
    pub ready_after: Option<std::time::Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kubernetes_version: "v1.33.4".into(),
            nodes: 1,
            ready_after: Some(std::time::Duration::from_secs(1)),
        }
    }
}

/// One emulated cluster.
pub struct Emulator {
    pub store: Mutex<Store>,
    pub options: Options,
    pub addr: String,
}

fn builtin(plural: &str) -> Option<ResourceType> {
    resources::builtin()
        .into_iter()
        .find(|t| t.group.is_empty() && t.plural == plural)
}

impl Emulator {
    /// A cluster with the usual namespaces and `options.nodes` Ready nodes.
    pub fn new(options: Options, addr: String) -> Arc<Self> {
        let mut store = Store::new();
        if let Some(ns) = builtin("namespaces") {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let _ = store.create(&ns, "", json!({ "metadata": { "name": name } }));
            }
        }
        if let Some(node) = builtin("nodes") {
            for i in 0..options.nodes {
                let _ = store.create(
                    &node,
                    "",
                    json!({
                        "metadata": { "name": format!("node-{i}"), "labels": { "kubernetes.io/os": "linux" } },
                        "status": {
                            "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }],
                            "nodeInfo": { "kubeletVersion": options.kubernetes_version, "architecture": "amd64", "operatingSystem": "linux" },
                        },
                    }),
                );
            }
        }
        Arc::new(Emulator {
            store: Mutex::new(store),
            options,
            addr,
        })
    }

    pub fn version_info(&self) -> Value {
        let v = self.options.kubernetes_version.trim_start_matches('v');
        let mut parts = v.split('.');
        json!({
            "major": parts.next().unwrap_or("1"),
            "minor": parts.next().unwrap_or("0"),
            "gitVersion": self.options.kubernetes_version,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.24.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        })
    }

    /// The HTTP application.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .fallback(http::handle)
            .with_state(self.clone())
    }

    /// Serves until the listener fails.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        if let Some(after) = self.options.ready_after {
            let emu = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    emu.store.lock().await.settle(after);
                }
            });
        }
        axum::serve(listener, self.router()).await
    }
}

/// A kubeconfig for an emulator at `addr`.
pub fn kubeconfig(addr: SocketAddr, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n\
         current-context: {name}\nusers:\n- name: {name}\n  user:\n    token: emulator\n"
    )
}
