//! Who a peer is. A certificate issued by the hub carries exactly one identity as a URI
//! subject alternative name: `spiffe://tether.dev/cluster/<name>` for a member cluster's
//! agent, `spiffe://tether.dev/user/<name>` for an API client.

use std::fmt;

const PREFIX: &str = "spiffe://tether.dev/";

/// A verified peer identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A member cluster's agent.
    Cluster(String),
    /// A hub API user (tetherctl, pipelines).
    User(String),
}

impl Identity {
    /// The URI SAN that encodes this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Cluster(n) => format!("{PREFIX}cluster/{n}"),
            Identity::User(n) => format!("{PREFIX}user/{n}"),
        }
    }

    /// Reads an identity back from a URI SAN; `None` if it is not one of ours.
    pub fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(PREFIX)?;
        let (kind, name) = rest.split_once('/')?;
        validate_name(name).ok()?;
        match kind {
            "cluster" => Some(Identity::Cluster(name.to_string())),
            "user" => Some(Identity::User(name.to_string())),
            _ => None,
        }
    }

    /// `user/NAME` or `cluster/NAME`: how the audit log and the rate limits name it.
    pub fn actor(&self) -> String {
        match self {
            Identity::Cluster(n) => format!("cluster/{n}"),
            Identity::User(n) => format!("user/{n}"),
        }
    }

    /// The bare name, without the kind.
    pub fn name(&self) -> &str {
        match self {
            Identity::Cluster(n) | Identity::User(n) => n,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Cluster(n) => write!(f, "cluster {n:?}"),
            Identity::User(n) => write!(f, "user {n:?}"),
        }
    }
}

/// Checks a cluster or user name: a DNS-1123 label (lowercase letters, digits and `-`,
/// starting and ending with a letter or digit, at most 63 characters), as Kubernetes names
/// are, so a cluster name can be used in URLs, labels and file names unchanged.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if name.is_empty() {
        return Err("name must not be empty".into());
    }
    let quoted = crate::text::quote_short(name, 64);
    if name.len() > 63 {
        return Err(format!("name {quoted} is longer than 63 characters"));
    }
    if !name.chars().all(ok_char) || name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "name {quoted} must consist of lowercase letters, digits and '-', \
             and start and end with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_uri() {
        for id in [
            Identity::Cluster("edge-1".into()),
            Identity::User("admin".into()),
        ] {
            assert_eq!(Identity::from_uri(&id.uri()), Some(id));
        }
    }

    #[test]
    fn foreign_or_malformed_uris_are_not_identities() {
        for uri in [
            "spiffe://other.dev/cluster/a",
            "spiffe://tether.dev/robot/a",
            "spiffe://tether.dev/cluster/",
            "spiffe://tether.dev/cluster/UPPER",
            "spiffe://tether.dev/cluster/a/b",
        ] {
            assert_eq!(Identity::from_uri(uri), None, "{uri}");
        }
    }

    #[test]
    fn names_follow_dns_label_rules() {
        assert!(validate_name("edge-1").is_ok());
        assert!(validate_name("-edge").is_err());
        assert!(validate_name("Edge").is_err());
        assert!(validate_name(&"a".repeat(64)).is_err());
        assert!(validate_name("").is_err());
    }
}
