//! `tetherctl rollout ...` and `tetherctl events`.

use std::time::Duration;

use serde_json::json;
use tether_common::pb::{self, hub_api_client::HubApiClient};
use tether_common::time::rfc3339;
use tonic::transport::Channel;

use super::output::{self, Format};
use super::{CtlError, Failure};

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

pub(super) async fn rollout(
    api: &mut HubApiClient<Channel>,
    action: &str,
    name: &str,
    format: Format,
) -> Result<String, Failure> {
    let req = pb::RolloutRequest {
        name: name.to_string(),
        action: action.to_string(),
    };
    let status = match action {
        "status" => api.get_rollout(req).await?.into_inner(),
        "pause" | "resume" | "undo" => api.control_rollout(req).await?.into_inner(),
        other => {
            return Err(CtlError::usage(format!(
                "unknown rollout action {other:?} (status, pause, resume, undo)"
            ))
            .into());
        }
    };
    Ok(match format {
        Format::Table => render(&status),
        f => output::structured(&to_json(&status), f),
    })
}

pub(super) async fn events(
    api: &mut HubApiClient<Channel>,
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
