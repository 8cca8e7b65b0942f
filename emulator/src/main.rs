//! `tether-kube-emulator`: an emulated member cluster's API server (see the library).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tether_kube_emulator::{self as emulator, Emulator, Options};

#[derive(Debug, Parser)]
#[command(
    name = "tether-kube-emulator",
    about = "An emulated Kubernetes API server for tests and the quick start"
)]
struct Cli {
    /// Address to listen on; port 0 picks a free one (the kubeconfig says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig for this server here once it listens.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Name used in the kubeconfig.
    #[arg(long, default_value = "emulated")]
    name: String,
    #[arg(long, default_value = "v1.33.4")]
    kubernetes_version: String,
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// Workload objects become ready this long after their spec changes ("never" to keep them
    /// unready). Pods using an image tagged `:broken` never become ready.
    #[arg(long, default_value = "1s")]
    ready_after: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        eprintln!("error: cannot start the runtime");
        return ExitCode::from(1);
    };
    let result: anyhow::Result<()> = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
        let addr = listener.local_addr()?;
        if let Some(path) = &cli.kubeconfig_out {
            write_private(path, emulator::kubeconfig(addr, &cli.name).as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        println!("listening on http://{addr}");
        let ready_after = match cli.ready_after.as_str() {
            "never" => None,
            d => Some(
                humantime::parse_duration(d)
                    .map_err(|e| anyhow::anyhow!("invalid --ready-after {d:?}: {e}"))?,
            ),
        };
        let emu = Emulator::new(
            Options {
                kubernetes_version: cli.kubernetes_version.clone(),
                nodes: cli.nodes,
                ready_after,
            },
            addr.to_string(),
        );
        emu.serve(listener).await?;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Writes the kubeconfig owner-only, whole (a temporary file renamed into place).
fn write_private(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(contents)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
