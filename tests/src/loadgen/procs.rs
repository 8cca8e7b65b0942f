//! What a process costs, read from `/proc`: resident memory and CPU time; and what crosses
//! the TCP sockets on one port, from the kernel's per-socket counters (`ss -ti`).

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
    })
}

/// CPU time several processes have used so far, in seconds (processes gone count 0).
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| sample(*p).ok())
        .map(|s| s.cpu_ticks as f64 / TICKS_PER_SECOND)
        .sum()
}

/// CPU used between two samples, as a percentage of one core.
pub fn cpu_percent(a: &Sample, b: &Sample) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SECOND / secs * 100.0
}

/// Payload bytes and segments, both directions, through the established TCP sockets on one
/// local port, as the kernel counts them per socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sockets {
    pub sockets: usize,
    pub bytes: u64,
    pub segments: u64,
}

impl Sockets {
    /// Bytes and segments per second between `self` and a later reading, valid when the same
    /// sockets stayed open in between (a closed socket takes its counts with it).
    pub fn rates_since(&self, earlier: &Sockets, secs: f64) -> (f64, f64) {
        let secs = secs.max(1e-9);
        (
            self.bytes.saturating_sub(earlier.bytes) as f64 / secs,
            self.segments.saturating_sub(earlier.segments) as f64 / secs,
        )
    }
}

/// Reads the counters of every established socket on local `port` (`ss -tinH`; iproute2).
/// Why not `/proc/PID/io`: it counts file writes too (the store), which are not traffic.
pub fn sockets_on(port: u16) -> std::io::Result<Sockets> {
    let out = std::process::Command::new("ss")
        .args(["-tinH", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "ss failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse_ss(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ss(text: &str) -> Sockets {
    let mut s = Sockets::default();
    for token in text.split_whitespace() {
        let Some((key, value)) = token.split_once(':') else {
            continue;
        };
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "bytes_sent" => {
                s.sockets += 1;
                s.bytes += v;
            }
            "bytes_received" => s.bytes += v,
            "segs_out" | "segs_in" => s.segments += v,
            _ => {}
        }
    }
    s
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
    fn ss_counters_add_up_over_sockets_and_directions() {
        let text = "0 0 127.0.0.1:7443 127.0.0.1:5000\n\t cubic rtt:0.1/0.05 bytes_sent:100 \
                    bytes_acked:101 bytes_received:40 segs_out:3 segs_in:4 lastsnd:9\n\
                    0 0 127.0.0.1:7443 127.0.0.1:5001\n\t cubic bytes_sent:1 bytes_received:2 \
                    segs_out:1 segs_in:1\n";
        let s = parse_ss(text);
        assert_eq!((s.sockets, s.bytes, s.segments), (2, 143, 9));
        assert_eq!(parse_ss("").sockets, 0);
    }

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
    fn the_sockets_on_a_port_count_what_crossed_them() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        std::io::Write::write_all(&mut c, b"ping").unwrap();
        let mut buf = [0u8; 4];
        std::io::Read::read_exact(&mut s, &mut buf).unwrap();
        std::io::Write::write_all(&mut s, b"pong!").unwrap();
        std::io::Read::read_exact(&mut c, &mut [0u8; 5]).unwrap();
        let counted = sockets_on(port).unwrap();
        // The accepted socket only (the client's local port is another): 4 in, 5 out.
        assert_eq!((counted.sockets, counted.bytes), (1, 9), "{counted:?}");
        assert!(counted.segments >= 2, "{counted:?}");
    }
}
