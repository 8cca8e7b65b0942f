//! Keeps the hub and each Workload resource in step.
//!
//! For every resource (a kube-runtime controller, so changes arrive by watch and each
//! resource is reconciled by one task at a time):
//! - **apply**: when its generation is new, or the hub lacks the workload or holds another
//!   spec, the spec goes to the hub (`ApplyWorkload`, as the configured hub user and team);
//! - **status**: the hub's per-cluster status becomes `status.clusters`, `summary` and the
//!   conditions Synced, Available and Degraded with `observedGeneration`; read back every
//!   `status_interval` (slower once Available), written only when it changed;
//! - **delete**: a finalizer keeps the resource until the hub has taken the workload off
//!   every cluster.
//!
//! Ownership: a workload is the controller's when the hub's copy carries the annotation
//! `tether.dev/managed-by: tether-controller`. One made with tetherctl is never changed or
//! deleted from here; the resource reports `Synced=False, reason OwnedElsewhere`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tether_client::ClientConfig;
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tether_common::workload::{API_VERSION, KIND};
use tonic::transport::Channel;

use crate::crd::{ClusterSet, ClusterStatus, Condition, Workload, WorkloadStatus};

/// Held on every resource until the hub has deleted its workload.
pub const FINALIZER: &str = "tether.dev/hub-workload";
/// The hub-side annotation that marks a workload as made from a resource.
pub const MANAGED_BY: &str = "tether.dev/managed-by";
pub const CONTROLLER: &str = "tether-controller";
/// A status message longer than this is cut (a member's message is untrusted text).
const MESSAGE_LIMIT: usize = 512;

#[derive(Debug, Clone)]
pub struct Options {
    pub team: String,
    pub status_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("the hub: {0}")]
    Hub(String),
    #[error("workload/{0} is still being removed from its clusters")]
    Deleting(String),
    #[error("{0}")]
    Setup(String),
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
            other => Error::Setup(other.to_string()),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Hub(format!("{:?}: {}", s.code(), s.message()))
    }
}

pub(crate) struct Ctx {
    pub(crate) kube: Client,
    pub(crate) hub: HubApiServiceClient<Channel>,
    pub(crate) opts: Options,
}

/// Connects to both sides and reconciles until SIGTERM/SIGINT.
pub async fn run(
    config: ClientConfig,
    kubeconfig: Option<PathBuf>,
    opts: Options,
) -> Result<(), Error> {
    let kube = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| Error::Setup(format!("{}: {e}", path.display())))?;
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| Error::Setup(format!("{}: {e}", path.display())))?;
            Client::try_from(cfg)?
        }
        None => Client::try_default().await?,
    };
    let hub = tether_client::connect::connect(&config)
        .await
        .map_err(|e| Error::Setup(e.message))?;
    let api: Api<Workload> = Api::all(kube.clone());
    // One clear line instead of a watch failing for ever.
    api.list(&ListParams::default().limit(1)).await.map_err(|e| {
        Error::Setup(format!(
            "cannot list workloads.tether.dev ({e}): is the CRD installed (tether-controller crd | kubectl apply -f -) and may this identity list it?"
        ))
    })?;
    let sets: Api<ClusterSet> = Api::all(kube.clone());
    sets.list(&ListParams::default().limit(1)).await.map_err(|e| {
        Error::Setup(format!(
            "cannot list clustersets.tether.dev ({e}): is the CRD installed (tether-controller crd | kubectl apply -f -) and may this identity list it?"
        ))
    })?;
    tracing::info!(hub = %config.hub, user = %config.user, "watching Workload and ClusterSet resources");
    let ctx = Arc::new(Ctx { kube, hub, opts });
    // One signal stops both controllers.
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        tether_common::signal::terminated().await;
        stop.cancel();
    });
    let workloads = Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(stopped.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile");
            }
        });
    let cluster_sets = Controller::new(sets, watcher::Config::default())
        .graceful_shutdown_on(stopped.cancelled_owned())
        .run(
            crate::clustersets::reconcile,
            crate::clustersets::error_policy,
            ctx,
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile");
            }
        });
    futures::join!(workloads, cluster_sets);
    tracing::info!("stopped");
    Ok(())
}

async fn reconcile(w: Arc<Workload>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let api: Api<Workload> = Api::all(ctx.kube.clone());
    finalizer(&api, FINALIZER, w, |event| async {
        match event {
            Event::Apply(w) => apply(&w, &ctx).await,
            Event::Cleanup(w) => cleanup(&w, &ctx).await,
        }
    })
    .await
    .map_err(Error::from)
}

fn error_policy(w: Arc<Workload>, e: &Error, _: Arc<Ctx>) -> Action {
    match e {
        Error::Deleting(_) => Action::requeue(Duration::from_secs(2)),
        _ => {
            tracing::warn!(workload = %w.name_any(), error = %e, "will retry");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// Whose the hub's workload of this name is.
enum Owner {
    None,
    /// Made from a resource: whether the hub is deleting it, and its spec.
    Us {
        deleting: bool,
        spec: Value,
    },
    Other,
}

async fn owner(hub: &mut HubApiServiceClient<Channel>, name: &str) -> Result<Owner, Error> {
    let info = match hub
        .get_workload(pb::GetWorkloadRequest {
            name: name.to_string(),
        })
        .await
    {
        Ok(r) => r.into_inner().workload.unwrap_or_default(),
        Err(s) if s.code() == tonic::Code::NotFound => return Ok(Owner::None),
        Err(s) => return Err(s.into()),
    };
    let doc: Value = serde_json::from_str(&info.workload_json).unwrap_or(Value::Null);
    let ours = doc
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MANAGED_BY))
        .and_then(Value::as_str)
        == Some(CONTROLLER);
    Ok(if ours {
        Owner::Us {
            deleting: info.deleting,
            spec: doc.get("spec").cloned().unwrap_or(Value::Null),
        }
    } else {
        Owner::Other
    })
}

async fn apply(w: &Workload, ctx: &Ctx) -> Result<Action, Error> {
    let name = w.name_any();
    let mut hub = ctx.hub.clone();
    let spec = serde_json::to_value(&w.spec.spec).unwrap_or(Value::Null);
    let generation = w.metadata.generation;
    let seen = w.status.as_ref().and_then(|s| s.observed_generation);
    let synced = w
        .status
        .as_ref()
        .is_some_and(|s| condition_is(&s.conditions, "Synced", "True"));

    let send = match owner(&mut hub, &name).await? {
        Owner::Other => {
            let status = refused(
                w,
                "OwnedElsewhere",
                &format!(
                    "workload {name} exists on the hub and was not made from a Workload resource (tetherctl?): delete it there, or name this resource differently"
                ),
            );
            write_status(ctx, w, status).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        Owner::None => true,
        Owner::Us { spec: held, .. } => held != spec || seen != generation || !synced,
    };
    if send {
        let doc = json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {
                "name": name,
                "labels": w.labels(),
                "annotations": { MANAGED_BY: CONTROLLER },
            },
            "spec": spec,
        });
        let applied = hub
            .apply_workload(pb::ApplyWorkloadRequest {
                workload_json: doc.to_string(),
                team: ctx.opts.team.clone(),
            })
            .await;
        match applied {
            Ok(r) => {
                let r = r.into_inner();
                tracing::info!(workload = %name, revision = r.revision, changed = r.changed, "applied to the hub");
            }
            // The hub refused the spec or the caller: the resource says why; a new spec
            // (a new generation) is reconciled at once anyway.
            Err(s) if refusal(&s) => {
                let status = refused(w, "Rejected", s.message());
                write_status(ctx, w, status).await?;
                return Ok(Action::requeue(Duration::from_secs(300)));
            }
            Err(s) => return Err(s.into()),
        }
    }

    let st = hub
        .get_workload_status(pb::GetWorkloadStatusRequest { name: name.clone() })
        .await?
        .into_inner();
    let mut status = observed(w, &st, None);
    let mut available = condition_is(&status.conditions, "Available", "True");
    if !available {
        // Only a workload that is not Available can be waiting on a halted rollout.
        let rollout = hub
            .get_rollout(pb::GetRolloutRequest { name: name.clone() })
            .await?
            .into_inner()
            .rollout;
        status = observed(w, &st, rollout.as_ref());
        available = condition_is(&status.conditions, "Available", "True");
    }
    write_status(ctx, w, status).await?;
    let interval = ctx.opts.status_interval;
    Ok(Action::requeue(if available {
        interval * 5
    } else {
        interval
    }))
}

async fn cleanup(w: &Workload, ctx: &Ctx) -> Result<Action, Error> {
    let name = w.name_any();
    let mut hub = ctx.hub.clone();
    match owner(&mut hub, &name).await? {
        // Gone from the hub, or never ours to delete: the finalizer comes off.
        Owner::None | Owner::Other => Ok(Action::await_change()),
        Owner::Us { deleting, .. } => {
            if !deleting {
                match hub
                    .delete_workload(pb::DeleteWorkloadRequest { name: name.clone() })
                    .await
                {
                    Ok(_) => tracing::info!(workload = %name, "deleting from the hub"),
                    Err(s) if s.code() == tonic::Code::NotFound => {
                        return Ok(Action::await_change());
                    }
                    Err(s) => return Err(s.into()),
                }
            }
            Err(Error::Deleting(name))
        }
    }
}

/// Refusals that retrying the same spec cannot fix.
pub(crate) fn refusal(s: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        s.code(),
        Code::InvalidArgument
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::OutOfRange
    )
}

fn condition_is(conditions: &[Condition], type_: &str, status: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == status)
}

pub(crate) fn cut(text: &str) -> String {
    let text = tether_common::text::terminal_safe(text);
    match text.char_indices().nth(MESSAGE_LIMIT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

/// The status for a spec the hub did not take: Synced False, the rest as it was.
fn refused(w: &Workload, reason: &str, message: &str) -> WorkloadStatus {
    let mut status = w.status.clone().unwrap_or_default();
    let generation = w.metadata.generation;
    status.observed_generation = generation;
    let previous = std::mem::take(&mut status.conditions);
    // Synced and Ready say the hub refused this generation; Available and Degraded still
    // describe what runs (the last spec the hub took).
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != "Synced" && c.type_ != "Ready")
        .cloned()
        .collect();
    let message = cut(message);
    conditions.insert(
        0,
        condition(&previous, generation, "Synced", false, reason, &message),
    );
    conditions.push(condition(
        &previous, generation, "Ready", false, reason, &message,
    ));
    status.conditions = conditions;
    status
}

/// The status the hub reports, as the resource shows it.
fn observed(
    w: &Workload,
    st: &pb::GetWorkloadStatusResponse,
    rollout: Option<&pb::RolloutStatus>,
) -> WorkloadStatus {
    let generation = w.metadata.generation;
    let previous = w
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let placed: Vec<&pb::ClusterWorkloadStatus> = st
        .clusters
        .iter()
        .filter(|c| c.phase != "Removing" && c.phase != "Retiring")
        .collect();
    // tetherctl wait's rule: Available, not stale, on the revision it should run, and that
    // revision the current one (not held back by a rollout).
    let is_available = |c: &pb::ClusterWorkloadStatus| {
        c.phase == "Available" && !c.stale && c.reported_revision == c.revision && !c.outdated
    };
    let available = placed.iter().filter(|c| is_available(c)).count();
    let waiting: Vec<String> = placed
        .iter()
        .filter(|c| !is_available(c))
        .map(|c| {
            let phase = if c.stale {
                format!("{} (stale)", c.phase)
            } else if c.outdated {
                format!(
                    "{} on revision {}, the newer one waits in the rollout",
                    c.phase, c.reported_revision
                )
            } else {
                c.phase.clone()
            };
            format!("{}: {phase}", c.cluster)
        })
        .collect();
    let halted = rollout.filter(|r| r.state == "Halted");
    let (is_avail, reason, message) = if !placed.is_empty() && waiting.is_empty() {
        (
            true,
            "Available",
            format!("available on {available} cluster(s)"),
        )
    } else if let Some(r) = halted {
        (false, "RolloutHalted", r.reason.clone())
    } else if placed.is_empty() {
        (
            false,
            "NoClusters",
            "no cluster matches the placement (or the clusters are not Ready)".to_string(),
        )
    } else {
        (
            false,
            "Progressing",
            format!("waiting for {}", waiting.join(", ")),
        )
    };
    let degraded = placed.iter().find(|c| c.phase == "Degraded");
    let conditions = vec![
        condition(
            &previous,
            generation,
            "Synced",
            true,
            "Applied",
            &format!("the hub holds revision {}", st.revision),
        ),
        condition(
            &previous,
            generation,
            "Available",
            is_avail,
            reason,
            &cut(&message),
        ),
        // Ready mirrors Available for tools that read the common convention (Flux's kstatus,
        // `kubectl wait --for=condition=Ready`).
        condition(
            &previous,
            generation,
            "Ready",
            is_avail,
            reason,
            &cut(&message),
        ),
        match degraded {
            Some(c) => condition(
                &previous,
                generation,
                "Degraded",
                true,
                "Degraded",
                &cut(&format!("{}: {}", c.cluster, c.message)),
            ),
            None => condition(&previous, generation, "Degraded", false, "AsExpected", ""),
        },
    ];
    WorkloadStatus {
        observed_generation: generation,
        revision: Some(st.revision),
        summary: format!("{available}/{}", placed.len()),
        clusters: st
            .clusters
            .iter()
            .map(|c| ClusterStatus {
                name: c.cluster.clone(),
                phase: if c.stale {
                    format!("{} (stale)", c.phase)
                } else {
                    c.phase.clone()
                },
                revision: c.reported_revision,
                message: cut(&c.message),
            })
            .collect(),
        conditions,
    }
}

/// A condition; its transition time stays while its status does.
pub(crate) fn condition(
    previous: &[Condition],
    generation: Option<i64>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| tether_common::time::rfc3339(tether_common::time::unix_now()));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: since,
        observed_generation: generation,
    }
}

async fn write_status(ctx: &Ctx, w: &Workload, status: WorkloadStatus) -> Result<(), Error> {
    patch_status(ctx, w, w.status.as_ref(), status).await
}

/// Writes a resource's status, unless it already says exactly that (a write would wake the
/// controller for nothing).
pub(crate) async fn patch_status<K, S>(
    ctx: &Ctx,
    resource: &K,
    current: Option<&S>,
    status: S,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize + PartialEq,
{
    if current == Some(&status) {
        return Ok(());
    }
    let api: Api<K> = Api::all(ctx.kube.clone());
    api.patch_status(
        &resource.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::WorkloadSpec;

    fn resource(generation: i64, status: Option<WorkloadStatus>) -> Workload {
        let mut w = Workload::new(
            "web",
            WorkloadSpec {
                spec: Default::default(),
            },
        );
        w.metadata.generation = Some(generation);
        w.status = status;
        w
    }

    fn cluster(name: &str, phase: &str, revision: u64, reported: u64) -> pb::ClusterWorkloadStatus {
        pb::ClusterWorkloadStatus {
            cluster: name.into(),
            phase: phase.into(),
            revision,
            reported_revision: reported,
            ..Default::default()
        }
    }

    fn status(clusters: Vec<pb::ClusterWorkloadStatus>) -> pb::GetWorkloadStatusResponse {
        pb::GetWorkloadStatusResponse {
            name: "web".into(),
            revision: 2,
            deleting: false,
            clusters,
        }
    }

    fn get<'a>(s: &'a WorkloadStatus, type_: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition: {s:?}"))
    }

    #[test]
    fn available_when_every_placed_cluster_runs_the_current_revision() {
        let s = observed(
            &resource(3, None),
            &status(vec![
                cluster("a", "Available", 2, 2),
                cluster("b", "Available", 2, 2),
                cluster("old", "Removing", 1, 1),
            ]),
            None,
        );
        assert_eq!(get(&s, "Available").status, "True");
        assert_eq!(get(&s, "Ready").status, "True");
        assert_eq!(get(&s, "Synced").status, "True");
        assert_eq!(get(&s, "Degraded").status, "False");
        assert_eq!(s.summary, "2/2");
        assert_eq!(s.observed_generation, Some(3));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(s.clusters.len(), 3);
    }

    #[test]
    fn a_cluster_held_back_by_the_rollout_or_stale_is_not_available() {
        let mut held = cluster("b", "Available", 1, 1);
        held.outdated = true;
        let s = observed(
            &resource(1, None),
            &status(vec![cluster("a", "Available", 2, 2), held]),
            None,
        );
        let available = get(&s, "Available");
        assert_eq!(
            (available.status.as_str(), available.reason.as_str()),
            ("False", "Progressing")
        );
        assert!(
            available.message.contains("b: Available on revision 1"),
            "{available:?}"
        );
        assert_eq!(s.summary, "1/2");

        let mut stale = cluster("a", "Available", 2, 2);
        stale.stale = true;
        let s = observed(&resource(1, None), &status(vec![stale]), None);
        assert_eq!(get(&s, "Available").status, "False");
        assert_eq!(s.clusters[0].phase, "Available (stale)");
    }

    #[test]
    fn halted_rollouts_degraded_clusters_and_empty_placements_say_why() {
        let halted = pb::RolloutStatus {
            state: "Halted".into(),
            reason: "wave 1 did not become Available".into(),
            ..Default::default()
        };
        let s = observed(
            &resource(1, None),
            &status(vec![cluster("a", "Progressing", 2, 2)]),
            Some(&halted),
        );
        let available = get(&s, "Available");
        assert_eq!(available.reason, "RolloutHalted");
        assert_eq!(available.message, "wave 1 did not become Available");

        let mut bad = cluster("a", "Degraded", 2, 2);
        bad.message = "ConfigMap web: forbidden\u{1b}[2J".into();
        let s = observed(&resource(1, None), &status(vec![bad]), None);
        let degraded = get(&s, "Degraded");
        assert_eq!(degraded.status, "True");
        assert!(degraded.message.starts_with("a: ConfigMap web: forbidden"));
        assert!(
            !degraded.message.contains('\u{1b}'),
            "untrusted text is escaped"
        );

        let s = observed(&resource(1, None), &status(vec![]), None);
        assert_eq!(get(&s, "Available").reason, "NoClusters");
        assert_eq!(s.summary, "0/0");
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let first = observed(
            &resource(1, None),
            &status(vec![cluster("a", "Progressing", 2, 2)]),
            None,
        );
        let mut old = first.clone();
        for c in &mut old.conditions {
            c.last_transition_time = "2020-01-01T00:00:00Z".into();
        }
        let again = observed(
            &resource(1, Some(old.clone())),
            &status(vec![cluster("a", "Progressing", 2, 2)]),
            None,
        );
        assert!(
            again
                .conditions
                .iter()
                .all(|c| c.last_transition_time == "2020-01-01T00:00:00Z")
        );
        let flipped = observed(
            &resource(1, Some(old)),
            &status(vec![cluster("a", "Available", 2, 2)]),
            None,
        );
        assert_ne!(
            get(&flipped, "Available").last_transition_time,
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(
            get(&flipped, "Synced").last_transition_time,
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn a_refused_spec_flips_synced_and_keeps_the_rest() {
        let good = observed(
            &resource(1, None),
            &status(vec![cluster("a", "Available", 2, 2)]),
            None,
        );
        let s = refused(
            &resource(2, Some(good)),
            "Rejected",
            "spec.manifests[1].kind: required",
        );
        let synced = get(&s, "Synced");
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", "Rejected")
        );
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(get(&s, "Available").status, "True");
        assert_eq!(
            s.conditions.iter().filter(|c| c.type_ == "Synced").count(),
            1
        );
    }
}
