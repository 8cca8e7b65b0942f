//! ClusterSet resources → the hub's cluster sets (what teams are granted roles on).
//!
//! Create when the hub has none of that name, change the selector when it differs, delete
//! behind a finalizer; only sets the hub marks `managed_by: tether-controller` (a set made
//! with tetherctl reports `Synced=False, reason OwnedElsewhere` and is never touched). A set
//! still granted to a team is not deleted: the resource waits, `Synced=False, reason InUse`,
//! until the grant is revoked. Cluster sets are an admin's business on the hub, so the
//! controller's hub user needs the admin role for these.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tonic::transport::Channel;

use crate::crd::{ClusterSet, ClusterSetStatus, Condition};
use crate::reconcile::{CONTROLLER, Ctx, Error, FINALIZER, condition, cut, patch_status, refusal};

/// Cluster membership follows cluster labels on the hub: read it back this often.
const RESYNC: Duration = Duration::from_secs(30);

pub(crate) async fn reconcile(s: Arc<ClusterSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let api: Api<ClusterSet> = Api::all(ctx.kube.clone());
    finalizer(&api, FINALIZER, s, |event| async {
        match event {
            Event::Apply(s) => apply(&s, &ctx).await,
            Event::Cleanup(s) => cleanup(&s, &ctx).await,
        }
    })
    .await
    .map_err(Error::from)
}

pub(crate) fn error_policy(s: Arc<ClusterSet>, e: &Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(cluster_set = %s.name_any(), error = %e, "will retry");
    Action::requeue(Duration::from_secs(5))
}

async fn find(
    hub: &mut HubApiServiceClient<Channel>,
    name: &str,
) -> Result<Option<pb::ClusterSet>, Error> {
    let sets = hub
        .list_cluster_sets(pb::ListClusterSetsRequest {})
        .await?
        .into_inner()
        .cluster_sets;
    Ok(sets.into_iter().find(|s| s.name == name))
}

async fn apply(s: &ClusterSet, ctx: &Ctx) -> Result<Action, Error> {
    let name = s.name_any();
    let selector = s.spec.selector.to_string();
    let mut hub = ctx.hub.clone();
    let held = match find(&mut hub, &name).await? {
        Some(h) if h.managed_by != CONTROLLER => {
            let message = format!(
                "cluster set {name} exists on the hub and was not made from a ClusterSet resource (tetherctl?): delete it there, or name this resource differently"
            );
            write(ctx, s, status(s, None, false, "OwnedElsewhere", &message)).await?;
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        Some(h) if h.selector == selector => Ok(h),
        Some(_) => hub
            .update_cluster_set(pb::UpdateClusterSetRequest {
                name: name.clone(),
                selector: selector.clone(),
            })
            .await
            .map(|r| r.into_inner().cluster_set.unwrap_or_default()),
        None => hub
            .create_cluster_set(pb::CreateClusterSetRequest {
                name: name.clone(),
                selector: selector.clone(),
                managed_by: CONTROLLER.to_string(),
            })
            .await
            .map(|r| r.into_inner().cluster_set.unwrap_or_default()),
    };
    let held = match held {
        Ok(h) => h,
        Err(e) if refusal(&e) => {
            write(ctx, s, status(s, None, false, "Rejected", e.message())).await?;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
        Err(e) => return Err(e.into()),
    };
    let message = format!("the hub holds selector {:?}", held.selector);
    write(
        ctx,
        s,
        status(s, Some(held.clusters), true, "Applied", &message),
    )
    .await?;
    Ok(Action::requeue(RESYNC))
}

async fn cleanup(s: &ClusterSet, ctx: &Ctx) -> Result<Action, Error> {
    let name = s.name_any();
    let mut hub = ctx.hub.clone();
    match find(&mut hub, &name).await? {
        // Gone from the hub, or never ours to delete: the finalizer comes off.
        None => Ok(Action::await_change()),
        Some(h) if h.managed_by != CONTROLLER => Ok(Action::await_change()),
        Some(_) => match hub
            .delete_cluster_set(pb::DeleteClusterSetRequest { name: name.clone() })
            .await
        {
            Ok(_) => {
                tracing::info!(cluster_set = %name, "deleted from the hub");
                Ok(Action::await_change())
            }
            Err(e) if e.code() == tonic::Code::NotFound => Ok(Action::await_change()),
            // Still granted to a team: say so on the resource and wait for the revoke.
            Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                write(ctx, s, status(s, None, false, "InUse", e.message())).await?;
                Err(Error::Hub(e.message().to_string()))
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// The status: `clusters` when the hub answered with them (else as it was), and Synced.
fn status(
    s: &ClusterSet,
    clusters: Option<Vec<String>>,
    synced: bool,
    reason: &str,
    message: &str,
) -> ClusterSetStatus {
    let mut out = s.status.clone().unwrap_or_default();
    let generation = s.metadata.generation;
    let previous: Vec<Condition> = std::mem::take(&mut out.conditions);
    out.observed_generation = generation;
    if let Some(clusters) = clusters {
        out.summary = format!("{}", clusters.len());
        out.clusters = clusters;
    }
    out.conditions = vec![condition(
        &previous,
        generation,
        "Synced",
        synced,
        reason,
        &cut(message),
    )];
    out
}

async fn write(ctx: &Ctx, s: &ClusterSet, status: ClusterSetStatus) -> Result<(), Error> {
    patch_status(ctx, s, s.status.as_ref(), status).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ClusterSetSpec;
    use tether_common::workload::selector::LabelSelector;

    fn resource(generation: i64) -> ClusterSet {
        let mut s = ClusterSet::new(
            "eu",
            ClusterSetSpec {
                selector: LabelSelector::parse("region=eu").unwrap_or_default(),
            },
        );
        s.metadata.generation = Some(generation);
        s
    }

    #[test]
    fn the_status_says_what_the_hub_holds_and_keeps_the_clusters_on_a_refusal() {
        let mut s = resource(1);
        let applied = status(
            &s,
            Some(vec!["eu-1".into(), "eu-2".into()]),
            true,
            "Applied",
            "ok",
        );
        assert_eq!(applied.clusters, ["eu-1", "eu-2"]);
        assert_eq!(applied.summary, "2");
        assert_eq!(applied.observed_generation, Some(1));
        assert_eq!(applied.conditions[0].status, "True");

        s.status = Some(applied);
        s.metadata.generation = Some(2);
        let refused = status(&s, None, false, "Rejected", "selector: bad\u{1b}[2J");
        assert_eq!(
            refused.clusters,
            ["eu-1", "eu-2"],
            "what the hub still holds"
        );
        assert_eq!(refused.observed_generation, Some(2));
        let c = &refused.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Rejected")
        );
        assert!(!c.message.contains('\u{1b}'));
        assert_eq!(refused.conditions.len(), 1);
    }

    #[test]
    fn the_selector_reaches_the_hub_in_its_own_syntax() {
        let s = resource(1);
        assert_eq!(s.spec.selector.to_string(), "region=eu");
        let set: ClusterSet = serde_json::from_value(serde_json::json!({
            "apiVersion": "tether.dev/v1alpha1",
            "kind": "ClusterSet",
            "metadata": { "name": "prod" },
            "spec": { "selector": { "matchExpressions": [
                { "key": "env", "operator": "In", "values": ["prod", "staging"] }
            ] } }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let back = LabelSelector::parse(&set.spec.selector.to_string()).unwrap_or_default();
        assert_eq!(back, set.spec.selector);
    }
}
