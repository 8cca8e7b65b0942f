//! `tetherctl apply`, `workload create`, `get workload(s)`, `status`, `wait`, `delete workload`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tether_common::time::{age, rfc3339};
use tether_common::workload::{self, LabelSelector, Workload};
use tonic::transport::Channel;

use super::output::{self, Format, Table};
use super::{CtlError, Failure, required};

/// The name `-` stands for standard input wherever a file is accepted (`apply -f -`,
/// `workload create --from -`), so rendered output pipes straight in:
/// `helm template CHART | tetherctl workload create NAME --from -`.
pub const STDIN: &str = "-";

/// The most standard input may hold (the hub refuses far smaller workloads; this only keeps
/// a runaway pipe from filling memory before that answer).
const MAX_STDIN_BYTES: u64 = 64 << 20;

/// One input of `-f`/`--from`: its name in messages and its text.
struct Source {
    name: String,
    text: String,
}

/// The inputs `-f`/`--from` name: `-` is standard input (once), a directory every
/// .yaml/.yml/.json file in it (sorted), anything else one file.
fn sources(paths: &[PathBuf]) -> Result<Vec<Source>, CtlError> {
    if paths.iter().filter(|p| p.as_os_str() == STDIN).count() > 1 {
        return Err(CtlError::usage("standard input (-) can be read only once"));
    }
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == STDIN {
            out.push(Source {
                name: "<stdin>".into(),
                text: read_stdin()?,
            });
            continue;
        }
        let meta = std::fs::metadata(p)
            .map_err(|e| CtlError::usage(format!("cannot read {}: {e}", p.display())))?;
        if !meta.is_dir() {
            out.push(read(p)?);
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| CtlError::usage(format!("cannot read {}: {e}", p.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
            })
            .collect();
        entries.sort();
        if entries.is_empty() {
            return Err(CtlError::usage(format!(
                "{} holds no .yaml, .yml or .json file",
                p.display()
            )));
        }
        for f in entries {
            out.push(read(&f)?);
        }
    }
    Ok(out)
}

fn read(p: &Path) -> Result<Source, CtlError> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| CtlError::usage(format!("cannot read {}: {e}", p.display())))?;
    Ok(Source {
        name: p.display().to_string(),
        text,
    })
}

fn read_stdin() -> Result<String, CtlError> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| CtlError::usage(format!("cannot read standard input: {e}")))?;
    if text.len() as u64 > MAX_STDIN_BYTES {
        return Err(CtlError::usage(format!(
            "standard input holds more than {} MiB",
            MAX_STDIN_BYTES >> 20
        )));
    }
    Ok(text)
}

/// Parses every Workload in the inputs; any mistake stops everything before anything is sent.
pub fn load_workloads(paths: &[PathBuf]) -> Result<Vec<Workload>, CtlError> {
    let mut out = Vec::new();
    for s in sources(paths)? {
        let ws = workload::parse_documents(&s.name, &s.text)
            .map_err(|e| CtlError::usage(e.to_string()))?;
        out.extend(ws);
    }
    Ok(out)
}

async fn send(
    api: &mut HubApiServiceClient<Channel>,
    w: &Workload,
    team: &str,
) -> Result<pb::ApplyWorkloadResponse, tonic::Status> {
    let json = serde_json::to_string(w).unwrap_or_default();
    Ok(api
        .apply_workload(pb::ApplyWorkloadRequest {
            workload_json: json,
            team: team.to_string(),
        })
        .await?
        .into_inner())
}

fn applied_line(r: &pb::ApplyWorkloadResponse) -> String {
    let verb = match (r.changed, r.revision) {
        (false, _) => "unchanged",
        (true, 1) => "created",
        (true, _) => "configured",
    };
    format!(
        "workload/{} {verb} (revision {}, {} cluster{})\n",
        r.name,
        r.revision,
        r.clusters.len(),
        if r.clusters.len() == 1 { "" } else { "s" }
    )
}

/// Sends workloads already loaded and checked ([`load_workloads`], [`workload_from_manifests`]).
pub(super) async fn apply(
    api: &mut HubApiServiceClient<Channel>,
    workloads: &[Workload],
    team: &str,
) -> Result<String, Failure> {
    let mut out = String::new();
    for w in workloads {
        let r = send(api, w, team).await?;
        out.push_str(&applied_line(&r));
    }
    Ok(out)
}

/// Builds a Workload from plain manifests: a folder of them, one file, or standard input
/// (`-`, what `helm template` or `kustomize build` print).
pub fn workload_from_manifests(
    name: &str,
    from: &Path,
    selector: Option<&str>,
    clusters: &[String],
) -> Result<Workload, CtlError> {
    let mut manifests = Vec::new();
    for f in sources(&[from.to_path_buf()])? {
        let docs: Vec<Value> = serde_saphyr::from_multiple(&f.text).map_err(|e| {
            CtlError::usage(format!(
                "{}: not valid YAML: {}",
                f.name,
                e.to_string().lines().next().unwrap_or_default()
            ))
        })?;
        for (i, d) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
            let missing = ["apiVersion", "kind"]
                .into_iter()
                .find(|k| d.get(*k).and_then(Value::as_str).is_none_or(str::is_empty))
                .or_else(|| {
                    d.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                        .then_some("metadata.name")
                });
            if let Some(field) = missing {
                return Err(CtlError::usage(format!(
                    "{}, document {}, field {field}: required",
                    f.name,
                    i + 1
                )));
            }
            manifests.push(d);
        }
    }
    if manifests.is_empty() {
        let from = if from.as_os_str() == STDIN {
            "standard input".to_string()
        } else {
            from.display().to_string()
        };
        return Err(CtlError::usage(format!("{from} holds no manifest")));
    }
    let cluster_selector = selector
        .map(|s| {
            LabelSelector::parse(s).map_err(|e| CtlError::usage(format!("invalid --selector: {e}")))
        })
        .transpose()?;
    let w = Workload {
        api_version: workload::API_VERSION.into(),
        kind: workload::KIND.into(),
        metadata: workload::Metadata {
            name: name.to_string(),
            ..Default::default()
        },
        spec: workload::Spec {
            manifests,
            placement: workload::Placement {
                clusters: clusters.to_vec(),
                cluster_selector,
                ..Default::default()
            },
            ..Default::default()
        },
    };
    w.validate().map_err(|(field, msg)| {
        CtlError::usage(format!("workload {name}, field {field}: {msg}"))
    })?;
    Ok(w)
}

pub(super) async fn list(
    api: &mut HubApiServiceClient<Channel>,
    format: Format,
) -> Result<String, Failure> {
    let ws = api
        .list_workloads(pb::ListWorkloadsRequest {})
        .await?
        .into_inner()
        .workloads;
    Ok(match format {
        Format::Table => {
            let mut t = Table::new(&["NAME", "TEAM", "REVISION", "CLUSTERS", "AVAILABLE", "PROGRESSING", "DEGRADED", "PENDING", "STALE"]);
            for w in ws {
                let name = if w.deleting { format!("{} (deleting)", w.name) } else { w.name };
                t.row(vec![
                    name,
                    output::or_none(&w.team),
                    w.revision.to_string(),
                    w.clusters.to_string(),
                    w.available.to_string(),
                    w.progressing.to_string(),
                    w.degraded.to_string(),
                    w.pending.to_string(),
                    w.stale.to_string(),
                ]);
            }
            t.render()
        }
        f => output::structured(
            &ws.into_iter()
                .map(|w| {
                    json!({
                        "name": w.name, "revision": w.revision, "clusters": w.clusters,
                        "available": w.available, "progressing": w.progressing, "degraded": w.degraded,
                        "pending": w.pending, "stale": w.stale, "deleting": w.deleting,
                        "team": w.team,
                    })
                })
                .collect::<Vec<_>>(),
            f,
        ),
    })
}

pub(super) async fn get(
    api: &mut HubApiServiceClient<Channel>,
    name: &str,
    format: Format,
) -> Result<String, Failure> {
    let info = api
        .get_workload(pb::GetWorkloadRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner()
        .workload;
    let info = required(info, "workload")?;
    let mut w: Value = serde_json::from_str(&info.workload_json).unwrap_or(Value::Null);
    Ok(match format {
        Format::Table => {
            let mut t = Table::new(&["NAME", "REVISION", "CLUSTERS", "UPDATED"]);
            t.row(vec![
                info.name,
                info.revision.to_string(),
                info.clusters.join(","),
                age(info.updated_unix),
            ]);
            t.render()
        }
        f => {
            w["status"] = json!({
                "revision": info.revision,
                "clusters": info.clusters,
                "created": rfc3339(info.created_unix),
                "updated": rfc3339(info.updated_unix),
                "deleting": info.deleting,
            });
            output::structured(&w, f)
        }
    })
}

fn status_json(s: &pb::GetWorkloadStatusResponse) -> Value {
    json!({
        "name": s.name,
        "revision": s.revision,
        "deleting": s.deleting,
        "clusters": s.clusters.iter().map(|c| json!({
            "cluster": c.cluster,
            "revision": c.revision,
            "reportedRevision": c.reported_revision,
            "phase": c.phase,
            "message": c.message,
            "ready": c.ready,
            "total": c.total,
            "stale": c.stale,
            "outdated": c.outdated,
            "clusterStatus": c.cluster_status,
            "reported": rfc3339(c.reported_unix),
            "feedback": c.feedback.iter().collect::<std::collections::BTreeMap<_, _>>(),
            "objects": c.objects.iter().map(|o| json!({
                "apiVersion": o.api_version, "kind": o.kind, "namespace": o.namespace,
                "name": o.name, "health": o.health, "message": o.message,
            })).collect::<Vec<_>>(),
            "objectsTotal": c.objects_total,
            "driftCorrections": c.drift_corrections,
            "drift": c.drift.iter().map(|d| json!({
                "object": d.object, "field": d.field, "manager": d.manager, "time": rfc3339(d.unix),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

pub(super) async fn status(
    api: &mut HubApiServiceClient<Channel>,
    name: &str,
    format: Format,
) -> Result<String, Failure> {
    let s = api
        .get_workload_status(pb::GetWorkloadStatusRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner();
    Ok(match format {
        Format::Table => {
            let mut t = Table::new(&["CLUSTER", "REVISION", "PHASE", "READY", "MESSAGE", "AGE"]);
            for c in &s.clusters {
                let mut phase = if c.stale {
                    format!("{} (stale)", c.phase)
                } else {
                    c.phase.clone()
                };
                if c.outdated {
                    phase.push_str(" (update pending)");
                }
                t.row(vec![
                    c.cluster.clone(),
                    c.revision.to_string(),
                    phase,
                    format!("{}/{}", c.ready, c.total),
                    output::or_none(&c.message),
                    age(c.reported_unix),
                ]);
            }
            t.render()
        }
        f => output::structured(&status_json(&s), f),
    })
}

/// Waits until every placed cluster reports Available: on the workload's current revision
/// (failing at once if its rollout halted), or with `any` on whatever revision it runs.
pub(super) async fn wait(
    api: &mut HubApiServiceClient<Channel>,
    name: &str,
    timeout: Duration,
    any: bool,
) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let s = api
            .get_workload_status(pb::GetWorkloadStatusRequest {
                name: name.to_string(),
            })
            .await?
            .into_inner();
        let placed: Vec<&pb::ClusterWorkloadStatus> = s
            .clusters
            .iter()
            .filter(|c| c.phase != "Removing" && c.phase != "Retiring")
            .collect();
        let ready = |c: &pb::ClusterWorkloadStatus| {
            c.phase == "Available"
                && !c.stale
                && c.reported_revision == c.revision
                && (any || !c.outdated)
        };
        let available = placed.iter().filter(|c| ready(c)).count();
        let waiting: Vec<String> = placed
            .iter()
            .filter(|c| !ready(c))
            .map(|c| {
                let why = if c.stale {
                    format!("{} (stale)", c.phase)
                } else if c.outdated && c.phase == "Available" {
                    "Available on an older revision; the new one waits in the rollout".to_string()
                } else {
                    c.phase.clone()
                };
                format!("{}: {why}", c.cluster)
            })
            .collect();
        if !any && !waiting.is_empty() {
            let r = api
                .get_rollout(pb::GetRolloutRequest {
                    name: name.to_string(),
                })
                .await?
                .into_inner()
                .rollout;
            let r = required(r, "rollout")?;
            if r.state == "Halted" {
                return Err(CtlError::runtime(format!(
                    "workload/{name} will not become available: its rollout of revision {} halted: {} (see: tetherctl rollout status {name})",
                    r.revision, r.reason
                ))
                .into());
            }
        }
        let line = format!(
            "workload/{name}: {available}/{} clusters available{}",
            placed.len(),
            if waiting.is_empty() {
                String::new()
            } else {
                format!(" (waiting for {})", waiting.join(", "))
            }
        );
        if line != last {
            eprintln!("{}", tether_common::text::terminal_safe(&line));
            last = line;
        }
        if !placed.is_empty() && waiting.is_empty() {
            return Ok(format!(
                "workload/{name} is available on {} cluster{}\n",
                placed.len(),
                if placed.len() == 1 { "" } else { "s" }
            ));
        }
        if Instant::now() >= deadline {
            return Err(CtlError::runtime(format!(
                "timed out after {} waiting for workload/{name}: {available}/{} clusters available{}",
                humantime::format_duration(timeout),
                placed.len(),
                if placed.is_empty() { " (it is placed on no cluster)".to_string() } else { format!("; waiting for {}", waiting.join(", ")) }
            ))
            .into());
        }
        tokio::time::sleep(
            Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

pub(super) async fn delete(
    api: &mut HubApiServiceClient<Channel>,
    name: &str,
) -> Result<String, Failure> {
    api.delete_workload(pb::DeleteWorkloadRequest {
        name: name.to_string(),
    })
    .await?;
    Ok(format!(
        "workload/{name} deleted (clusters remove it as they hear of it)\n"
    ))
}
