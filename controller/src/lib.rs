//! `tether-controller`: Workload and ClusterSet custom resources on a Kubernetes cluster (the
//! host), applied to a Tether hub, with the hub's answer written back to each resource.
//!
//! So `kubectl apply`, Argo CD, Flux and Helm can drive Tether, and `kubectl wait
//! --for=condition=Available workload/web` works. [`crd`] defines the resources;
//! [`reconcile`] keeps workloads in step (apply, status, finalizer-guarded delete) and runs
//! both controllers; [`clustersets`] does the same for cluster sets. The hub stays the source
//! of truth and is reached as an ordinary API client (a hub user's certificate).

pub mod clustersets;
pub mod crd;
pub mod reconcile;
