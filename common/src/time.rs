//! Wall-clock helpers: records and messages carry Unix seconds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 (UTC, seconds) for a Unix timestamp; empty for 0.
pub fn rfc3339(unix: i64) -> String {
    if unix <= 0 {
        return String::new();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix as u64)).to_string()
}

/// A short age like `5s`, `3m`, `2h`, `4d` between `unix` and now, as kubectl prints it.
pub fn age(unix: i64) -> String {
    if unix <= 0 {
        return "<none>".to_string();
    }
    let secs = (unix_now() - unix).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Parses a duration like `90s`, `15m`, `1h30m` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let now = unix_now();
        assert_eq!(age(now - 5), "5s");
        assert_eq!(age(now - 600), "10m");
        assert_eq!(age(now - 3 * 3600), "3h");
        assert_eq!(age(now - 5 * 86_400), "5d");
        assert_eq!(age(0), "<none>");
    }

    #[test]
    fn durations_parse_and_fail_clearly() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
    }
}
