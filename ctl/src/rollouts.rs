//! `tetherctl rollout ...` and `tetherctl events`.

use std::time::Duration;

use serde_json::json;
use tether_common::pb::{self, hub_api_service_client::HubApiServiceClient};
use tether_common::time::rfc3339;
use tonic::transport::Channel;

use super::output::{self, Format};
use super::{CtlError, Failure, required};

fn render(s: &pb::RolloutStatus) -> String {
    let mut out = format!(
        "workload/{} revision {}: {}{}\n",
        s.name,
        s.revision,
        s.state,
        if s.reason.is_empty() {
            String::new()
        } else {
            format!(" — {}", s.reason)
        }
    );
    out.push_str(&format!(
        "max unavailable: {} cluster(s)\n",
        s.max_unavailable
    ));
    for (i, w) in s.waves.iter().enumerate() {
        let updated = w.clusters.iter().filter(|c| c.updated).count();
        let available = w
            .clusters
            .iter()
            .filter(|c| c.updated && c.available)
            .count();
        let marker = if s.state != "Complete" && i as u32 == s.current_wave {
            "  <- current"
        } else {
            ""
        };
        out.push_str(&format!(
            "wave {} {}: {}/{} updated, {}/{} available{}\n",
            i + 1,
            w.selector,
            updated,
            w.clusters.len(),
            available,
            w.clusters.len(),
            marker
        ));
        for c in &w.clusters {
            let state = match (c.updated, c.available, c.offline) {
                (_, _, true) => "offline",
                (true, true, _) => "updated, available",
                (true, false, _) => "updated, not available",
                (false, _, _) => "waiting",
            };
            out.push_str(&format!(
                "  {:<20} revision {:<4} {:<24} {}\n",
                c.cluster, c.revision, state, c.phase
            ));
        }
    }
    out
}

fn to_json(s: &pb::RolloutStatus) -> serde_json::Value {
    json!({
        "name": s.name, "revision": s.revision, "state": s.state, "reason": s.reason,
        "currentWave": s.current_wave + 1, "maxUnavailable": s.max_unavailable,
        "waves": s.waves.iter().map(|w| json!({
            "selector": w.selector,
            "clusters": w.clusters.iter().map(|c| json!({
                "cluster": c.cluster, "revision": c.revision, "updated": c.updated,
                "available": c.available, "offline": c.offline, "phase": c.phase,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// How `rollout` runs.
pub(super) struct Options {
    pub(super) to_revision: Option<u64>,
    pub(super) watch: bool,
    pub(super) timeout: Duration,
    pub(super) format: Format,
}

fn show(status: &pb::RolloutStatus, format: Format) -> String {
    match format {
        Format::Table => render(status),
        f => output::structured(&to_json(status), f),
    }
}

/// A one-line summary for progress on stderr.
fn progress(s: &pb::RolloutStatus) -> String {
    let clusters: Vec<&pb::RolloutCluster> = s.waves.iter().flat_map(|w| &w.clusters).collect();
    let updated = clusters.iter().filter(|c| c.updated).count();
    let available = clusters.iter().filter(|c| c.updated && c.available).count();
    format!(
        "workload/{} revision {}: {} (wave {} of {}): {updated}/{} updated, {available}/{} available",
        s.name,
        s.revision,
        s.state,
        s.current_wave + 1,
        s.waves.len(),
        clusters.len(),
        clusters.len()
    )
}

/// Halted is a failure, as `kubectl rollout status` fails on a progress deadline: the
/// status still goes to stdout.
fn halted(status: &pb::RolloutStatus, format: Format) -> Failure {
    print!(
        "{}",
        tether_common::text::terminal_safe(&show(status, format))
    );
    CtlError::runtime(format!(
        "rollout of workload/{} revision {} halted: {} (fix the workload and apply it, `tetherctl rollout undo {}`, or `tetherctl rollout resume {}` to try again)",
        status.name, status.revision, status.reason, status.name, status.name
    ))
    .into()
}

pub(super) async fn rollout(
    api: &mut HubApiServiceClient<Channel>,
    action: &str,
    name: &str,
    opts: Options,
) -> Result<String, Failure> {
    if opts.to_revision.is_some() && action != "undo" {
        return Err(CtlError::usage("--to-revision goes with `rollout undo`").into());
    }
    let status = match action {
        "status" => return status(api, name, &opts).await,
        "history" => return history(api, name, opts.format).await,
        "pause" | "resume" | "undo" => {
            let req = pb::ControlRolloutRequest {
                name: name.to_string(),
                action: action.to_string(),
                to_revision: opts.to_revision.unwrap_or_default(),
            };
            required(
                api.control_rollout(req).await?.into_inner().rollout,
                "rollout",
            )?
        }
        other => {
            return Err(CtlError::usage(format!(
                "unknown rollout action {other:?} (status, history, pause, resume, undo)"
            ))
            .into());
        }
    };
    Ok(show(&status, opts.format))
}

async fn status(
    api: &mut HubApiServiceClient<Channel>,
    name: &str,
    opts: &Options,
) -> Result<String, Failure> {
    let req = pb::GetRolloutRequest {
        name: name.to_string(),
    };
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut last = String::new();
    loop {
        let s = required(
            api.get_rollout(req.clone()).await?.into_inner().rollout,
            "rollout",
        )?;
        if s.state == "Halted" {
            return Err(halted(&s, opts.format));
        }
        if !opts.watch || s.state == "Complete" {
            return Ok(show(&s, opts.format));
        }
        let line = progress(&s);
        if line != last {
            eprintln!("{}", tether_common::text::terminal_safe(&line));
            last = line;
        }
        if tokio::time::Instant::now() >= deadline {
            print!(
                "{}",
                tether_common::text::terminal_safe(&show(&s, opts.format))
            );
            return Err(CtlError::runtime(format!(
                "timed out after {} waiting for the rollout of workload/{} to complete ({})",
                humantime::format_duration(opts.timeout),
                s.name,
                s.state
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn history(
    api: &mut HubApiServiceClient<Channel>,
    name: &str,
    format: Format,
) -> Result<String, Failure> {
    let req = pb::GetRolloutHistoryRequest {
        name: name.to_string(),
    };
    let h = api.get_rollout_history(req).await?.into_inner();
    Ok(match format {
        Format::Table => {
            let mut out = format!("{:<9} {:<21} {:<16} CHANGE\n", "REVISION", "APPLIED", "BY");
            for r in &h.revisions {
                out.push_str(&format!(
                    "{:<9} {:<21} {:<16} {}\n",
                    r.revision,
                    rfc3339(r.unix),
                    r.by,
                    r.change
                ));
            }
            out.push_str(&format!(
                "current revision: {} (revisions in between changed placements or copies, not the spec)\n",
                h.revision
            ));
            out
        }
        f => output::structured(
            &json!({
                "name": h.name,
                "revision": h.revision,
                "revisions": h.revisions.iter().map(|r| json!({
                    "revision": r.revision, "applied": rfc3339(r.unix), "by": r.by, "change": r.change,
                })).collect::<Vec<_>>(),
            }),
            f,
        ),
    })
}

pub(super) async fn events(
    api: &mut HubApiServiceClient<Channel>,
    workload: Option<&str>,
    follow: bool,
    format: Format,
) -> Result<String, Failure> {
    let mut since = 0i64;
    let mut first = true;
    loop {
        let events = api
            .list_events(pb::ListEventsRequest {
                since_unix_ms: since,
                workload: workload.unwrap_or_default().to_string(),
            })
            .await?
            .into_inner()
            .events;
        let mut text = String::new();
        if first && format == Format::Table && !follow {
            text.push_str(&format!(
                "{:<21} {:<16} {:<14} {:<12} MESSAGE\n",
                "TIME", "WORKLOAD", "CLUSTER", "REASON"
            ));
        }
        for e in &events {
            since = since.max(e.unix_ms + 1);
        }
        match format {
            Format::Table => {
                for e in &events {
                    text.push_str(&format!(
                        "{:<21} {:<16} {:<14} {:<12} {}\n",
                        rfc3339(e.unix_ms / 1000),
                        e.workload,
                        output::or_none(&e.cluster),
                        e.reason,
                        e.message
                    ));
                }
            }
            f => {
                let v: Vec<_> = events
                    .iter()
                    .map(|e| json!({"time": rfc3339(e.unix_ms / 1000), "unixMs": e.unix_ms, "workload": e.workload, "cluster": e.cluster, "reason": e.reason, "message": e.message}))
                    .collect();
                if !follow {
                    return Ok(output::structured(&v, f));
                }
                for e in v {
                    text.push_str(&format!("{e}\n"));
                }
            }
        }
        if !follow {
            return Ok(text);
        }
        print!("{}", tether_common::text::terminal_safe(&text));
        // Followers are often pipes: each batch must leave now.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        first = false;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
