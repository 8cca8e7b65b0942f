//! `tether-controller`: Workload custom resources on a Kubernetes cluster (the host), applied
//! to a Tether hub, with the hub's per-cluster status written back to each resource.
//!
//! So `kubectl apply`, Argo CD, Flux and Helm can drive Tether, and `kubectl wait
//! --for=condition=Available workload/web` works. [`crd`] defines the resource; [`reconcile`]
//! keeps hub and resource in step (apply, status, finalizer-guarded delete); the hub stays
//! the source of truth and is reached as an ordinary API client (a hub user's certificate).

pub mod crd;
pub mod reconcile;
