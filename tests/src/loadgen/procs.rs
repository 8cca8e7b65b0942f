//! What a process costs, read from `/proc`: resident memory, CPU time, bytes through its
//! read/write system calls; and the machine's TCP segment count.

use std::path::Path;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub rss_bytes: u64,
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Bytes through read(2)-like and write(2)-like calls (sockets included).
    pub rchar: u64,
    pub wchar: u64,
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads a process's counters.
pub fn sample(pid: u32) -> std::io::Result<Sample> {
    let base = Path::new("/proc").join(pid.to_string());
    let status = std::fs::read_to_string(base.join("status"))?;
    let stat = std::fs::read_to_string(base.join("stat"))?;
    let io = std::fs::read_to_string(base.join("io")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the command name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        at: Instant::now(),
        rss_bytes: field(&status, "VmRSS:").unwrap_or(0) * 1024,
        cpu_ticks: ticks(11) + ticks(12),
        rchar: field(&io, "rchar:").unwrap_or(0),
        wchar: field(&io, "wchar:").unwrap_or(0),
    })
}

/// CPU used between two samples, as a percentage of one core.
pub fn cpu_percent(a: &Sample, b: &Sample) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SECOND / secs * 100.0
}

/// Socket and file bytes between two samples, per second.
pub fn io_bytes_per_second(a: &Sample, b: &Sample) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let bytes = (b.rchar + b.wchar).saturating_sub(a.rchar + a.wchar);
    bytes as f64 / secs
}

/// TCP segments the machine has sent (`/proc/net/snmp`, Tcp OutSegs).
pub fn tcp_out_segments() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Samples `pid` at the start and end of `window`.
pub async fn over(pid: u32, window: Duration) -> std::io::Result<(Sample, Sample)> {
    let a = sample(pid)?;
    tokio::time::sleep(window).await;
    Ok((a, sample(pid)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_bytes > 1 << 20, "{s:?}");
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let t = sample(std::process::id()).unwrap();
        assert!(x > 0);
        assert!(cpu_percent(&s, &t) > 10.0, "{s:?} {t:?}");
    }

    #[test]
    fn the_machine_counts_tcp_segments() {
        let before = tcp_out_segments();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        std::io::Write::write_all(&mut c, b"ping").unwrap();
        let mut buf = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut buf).unwrap();
        assert!(tcp_out_segments() > before);
    }
}
