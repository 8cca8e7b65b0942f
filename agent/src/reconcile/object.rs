//! One object of a workload: its update strategy (ServerSideApply, CreateOnly, ReadOnly), the
//! conflict policy for objects Tether did not create, ignored fields, drift, then the apply.

use std::collections::BTreeSet;

use serde_json::Value;
use tether_common::workload::bundle::Bundle;
use tether_common::workload::{ConflictPolicy, UpdateStrategy};

use super::WORKLOAD_LABEL;
use super::drift::{differences, owner, path_string, resource_version};
use super::pointer::{remove_pointer, set_pointer};
use super::worker::{Worker, forget_crd_types};
use crate::desired::ObjRef;
use crate::health;
use crate::status::{Health, ObjectState};

/// What one pass made of one object.
pub(super) struct Outcome {
    pub state: ObjectState,
    /// Its reference, when it could be addressed (kept in the inventory for pruning).
    pub reference: Option<ObjRef>,
    /// The live object afterwards, for status feedback.
    pub live: Option<Value>,
}

fn state(r: &ObjRef, health: Health, message: String) -> ObjectState {
    ObjectState {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        health,
        message,
    }
}

fn observe(r: &ObjRef, live: &Value) -> ObjectState {
    let (h, m) = health::assess(live);
    state(r, h, m)
}

/// The workload that manages `live`, by its label.
pub(super) fn managing_workload(live: &Value) -> Option<&str> {
    live.pointer(&format!(
        "/metadata/labels/{}",
        WORKLOAD_LABEL.replace('/', "~1")
    ))
    .and_then(Value::as_str)
}

impl Worker {
    /// Reconciles one manifest. `fresh`: a new revision, which is applied whatever the live
    /// object holds; otherwise it is applied only if it drifted.
    pub(super) async fn object(
        &mut self,
        bundle: &Bundle,
        manifest: &Value,
        fresh: bool,
        previous: &BTreeSet<ObjRef>,
    ) -> Outcome {
        let api = self.shared.api.clone();
        let mut obj = manifest.clone();
        obj["metadata"]["labels"][WORKLOAD_LABEL] = Value::from(self.workload.clone());
        let r = ObjRef::of(&obj);
        let namespaced = match self.namespaced(bundle, &r).await {
            Ok(n) => n,
            Err(e) => {
                return Outcome {
                    state: state(&r, Health::Missing, e.message),
                    reference: None,
                    live: None,
                };
            }
        };
        if namespaced && r.namespace.is_empty() {
            obj["metadata"]["namespace"] = Value::from("default");
        } else if !namespaced && let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let r = ObjRef::of(&obj);
        // A team's workload keeps to the team's namespaces, judged by what this cluster says
        // the kind is (the hub could only guess for custom kinds).
        if let Some(why) = bundle
            .confine
            .as_ref()
            .and_then(|c| c.refuses(&r.kind, &r.name, &r.namespace, namespaced))
        {
            return Outcome {
                state: state(&r, Health::Failed, why),
                reference: None,
                live: None,
            };
        }
        let live = match api.get(&r).await {
            Ok(l) => l,
            Err(e) => {
                return Outcome {
                    state: state(&r, Health::Missing, format!("cannot read: {e}")),
                    reference: Some(r),
                    live: None,
                };
            }
        };
        let opts = &bundle.apply;
        match (opts.update_strategy, &live) {
            (UpdateStrategy::ReadOnly, Some(l)) => {
                return Outcome {
                    state: observe(&r, l),
                    reference: None,
                    live: live.clone(),
                };
            }
            (UpdateStrategy::ReadOnly, None) => {
                return Outcome {
                    state: state(
                        &r,
                        Health::Missing,
                        "not found (ReadOnly: Tether does not create it)".into(),
                    ),
                    reference: None,
                    live: None,
                };
            }
            (UpdateStrategy::CreateOnly, Some(l)) => {
                return Outcome {
                    state: observe(&r, l),
                    reference: Some(r.clone()),
                    live: live.clone(),
                };
            }
            _ => {}
        }
        if live.is_none()
            && previous.contains(&r)
            && opts.update_strategy == UpdateStrategy::ServerSideApply
        {
            // Applied before, gone now: someone deleted it.
            tracing::warn!(workload = %self.workload, object = %r, "deleted object restored");
            self.record_drift(&r, "(deleted)".into(), String::new());
        }
        if let Some(l) = &live {
            match managing_workload(l) {
                Some(owner) if owner == self.workload => {}
                Some(other) => {
                    return Outcome {
                        state: state(
                            &r,
                            Health::Failed,
                            format!("conflict: managed by workload {other:?}"),
                        ),
                        reference: None,
                        live: live.clone(),
                    };
                }
                None if opts.conflict_policy == ConflictPolicy::Abort => {
                    return Outcome {
                        state: state(
                            &r,
                            Health::Failed,
                            "conflict: exists and is not managed by Tether (conflictPolicy Abort leaves it alone; Adopt takes it over)".into(),
                        ),
                        reference: None,
                        live: live.clone(),
                    };
                }
                None => {
                    tracing::info!(workload = %self.workload, object = %r, "adopting an unmanaged object")
                }
            }
            // Ignored fields are left to whoever owns them: apply the live value, never ours.
            for rule in opts
                .ignore_fields
                .iter()
                .filter(|i| i.target.matches(manifest))
            {
                for p in &rule.paths {
                    match l.pointer(p) {
                        Some(v) => set_pointer(&mut obj, p, v.clone()),
                        None => remove_pointer(&mut obj, p),
                    }
                }
            }
            if !fresh && opts.update_strategy == UpdateStrategy::ServerSideApply {
                match self.drifted(&r, &obj, l).await {
                    Ok(false) => {
                        return Outcome {
                            state: observe(&r, l),
                            reference: Some(r),
                            live: live.clone(),
                        };
                    }
                    Ok(true) => {}
                    Err(e) => {
                        return Outcome {
                            state: state(&r, Health::Failed, e.message),
                            reference: Some(r),
                            live: live.clone(),
                        };
                    }
                }
            }
        }
        let started = std::time::Instant::now();
        let result = api.apply(&obj, true).await;
        self.shared
            .settings
            .metrics
            .applied(result.is_ok(), started.elapsed());
        match result {
            Ok(applied) => {
                if r.kind == "CustomResourceDefinition" {
                    forget_crd_types(api.as_ref(), &applied);
                }
                self.verified
                    .insert(r.clone(), resource_version(&applied).to_string());
                Outcome {
                    state: observe(&r, &applied),
                    reference: Some(r),
                    live: Some(applied),
                }
            }
            Err(e) => {
                self.verified.remove(&r);
                Outcome {
                    state: state(&r, Health::Failed, e.message),
                    reference: Some(r),
                    live,
                }
            }
        }
    }

    /// Whether applying `obj` would change `live`, recording each changed field with the
    /// manager that changed it.
    async fn drifted(
        &mut self,
        r: &ObjRef,
        obj: &Value,
        live: &Value,
    ) -> Result<bool, crate::apply::ApiError> {
        let rv = resource_version(live);
        if !rv.is_empty() && self.verified.get(r).is_some_and(|v| v == rv) {
            return Ok(false);
        }
        let would = self.shared.api.apply_dry_run(obj).await?;
        if resource_version(&would) != rv {
            // Changed between our read and the dry run: look again on the next pass rather
            // than report a difference made by the race.
            return Ok(false);
        }
        let diffs = differences(&would, live);
        if diffs.is_empty() {
            self.verified.insert(r.clone(), rv.to_string());
            return Ok(false);
        }
        for path in diffs {
            let manager = owner(live, &path).unwrap_or_default();
            tracing::warn!(workload = %self.workload, object = %r, field = %path_string(&path), manager = %manager, "drift corrected");
            self.record_drift(r, path_string(&path), manager);
        }
        Ok(true)
    }
}
