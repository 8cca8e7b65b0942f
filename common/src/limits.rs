//! This process's open files against its limit: a hub gauge, and what the load generator
//! sizes its fleet by. Read from `/proc` (Linux only; `None` elsewhere).

/// This process's soft limit on open files.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// File descriptors this process has open, and its soft limit.
pub fn open_files() -> Option<(u64, u64)> {
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some((open, open_files_limit()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn open_files_are_counted_under_their_limit() {
        if cfg!(target_os = "linux") {
            let _held = std::fs::File::open("/proc/self/limits").unwrap();
            let (open, limit) = super::open_files().expect("read from /proc");
            assert!(open >= 1 && open <= limit, "{open} open, limit {limit}");
        }
    }
}
