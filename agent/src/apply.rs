//! The member cluster's API as the reconciler uses it: get, server-side apply, delete, by
//! dynamic type, with a discovery cache. [`ClusterApi`] is a trait so that a simulated
//! cluster (the load generator's) can stand in for kube.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use serde_json::Value;

use crate::desired::ObjRef;
use crate::metrics::AgentMetrics;

/// The field manager every apply uses.
pub const FIELD_MANAGER: &str = "tether-agent";

/// A failed call, with the API server's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (0 when the server was not reached).
    pub code: u16,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => ApiError {
                code: s.code,
                message: s.message.clone(),
            },
            other => ApiError {
                code: 0,
                message: other.to_string(),
            },
        }
    }
}

/// What the reconciler needs from a cluster.
pub trait ClusterApi: Send + Sync + 'static {
    /// Whether objects of this type live in namespaces (404 if the type is unknown).
    fn namespaced<'a>(
        &'a self,
        api_version: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;
    /// Forgets what discovery said about a type (after a CRD change).
    fn forget_type(&self, api_version: &str, kind: &str);
    fn get<'a>(&'a self, obj: &'a ObjRef) -> BoxFuture<'a, Result<Option<Value>, ApiError>>;
    /// Server-side apply as [`FIELD_MANAGER`]; `force` takes fields from other managers.
    fn apply<'a>(&'a self, obj: &'a Value, force: bool) -> BoxFuture<'a, Result<Value, ApiError>>;
    /// What a forced server-side apply of `obj` would make of the live object, without
    /// changing it (`dryRun=All`): the server's defaulting and normalisation included.
    fn apply_dry_run<'a>(&'a self, obj: &'a Value) -> BoxFuture<'a, Result<Value, ApiError>>;
    fn delete<'a>(&'a self, obj: &'a ObjRef) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// [`ClusterApi`] over kube-rs.
pub struct KubeApi {
    client: kube::Client,
    types: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
    metrics: AgentMetrics,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi").finish_non_exhaustive()
    }
}

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    match api_version.split_once('/') {
        Some((g, v)) => GroupVersionKind::gvk(g, v, kind),
        None => GroupVersionKind::gvk("", api_version, kind),
    }
}

impl KubeApi {
    pub fn new(client: kube::Client, metrics: AgentMetrics) -> Self {
        KubeApi {
            client,
            types: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn count(&self, verb: &'static str) {
        self.metrics.api_request(verb);
    }

    async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), ApiError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(hit) = self
            .types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(hit.clone());
        }
        self.count("discovery");
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk(api_version, kind))
            .await
            .map_err(|e| ApiError {
                code: 404,
                message: format!("the server has no resource type {kind} in {api_version}: {e}"),
            })?;
        let entry = (ar, caps.scope == kube::discovery::Scope::Namespaced);
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, entry.clone());
        Ok(entry)
    }

    async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Api<DynamicObject>, ApiError> {
        let (ar, namespaced) = self.resource(api_version, kind).await?;
        Ok(if namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        })
    }
}

fn to_value(o: DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

impl ClusterApi for KubeApi {
    fn namespaced<'a>(
        &'a self,
        api_version: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move { Ok(self.resource(api_version, kind).await?.1) })
    }

    fn forget_type(&self, api_version: &str, kind: &str) {
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(api_version.to_string(), kind.to_string()));
    }

    fn get<'a>(&'a self, obj: &'a ObjRef) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            let api = self
                .api(&obj.api_version, &obj.kind, &obj.namespace)
                .await?;
            self.count("get");
            Ok(api.get_opt(&obj.name).await?.map(to_value))
        })
    }

    fn apply<'a>(&'a self, obj: &'a Value, force: bool) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let r = ObjRef::of(obj);
            let api = self.api(&r.api_version, &r.kind, &r.namespace).await?;
            let mut params = PatchParams::apply(FIELD_MANAGER);
            if force {
                params = params.force();
            }
            self.count("apply");
            Ok(to_value(
                api.patch(&r.name, &params, &Patch::Apply(obj)).await?,
            ))
        })
    }

    fn apply_dry_run<'a>(&'a self, obj: &'a Value) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let r = ObjRef::of(obj);
            let api = self.api(&r.api_version, &r.kind, &r.namespace).await?;
            let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
            self.count("dry_run_apply");
            Ok(to_value(
                api.patch(&r.name, &params, &Patch::Apply(obj)).await?,
            ))
        })
    }

    fn delete<'a>(&'a self, obj: &'a ObjRef) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let api = self
                .api(&obj.api_version, &obj.kind, &obj.namespace)
                .await?;
            self.count("delete");
            match api.delete(&obj.name, &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }
}
