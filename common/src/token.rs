//! Join tokens: `<id>.<secret>`. The id names the token in listings and logs; the secret is
//! shown once and the hub keeps only its SHA-256.

use std::fmt;

use ring::rand::SecureRandom;
use subtle::ConstantTimeEq;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Length of the public token id.
pub const ID_LEN: usize = 6;
/// Length of the secret: 32 characters of a 36-letter alphabet, about 165 bits.
pub const SECRET_LEN: usize = 32;

/// A parsed join token. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    secret: String,
}

/// A token string that is not `<id>.<secret>`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "malformed join token: expected <id>.<secret> ({ID_LEN} and {SECRET_LEN} lowercase letters or \
     digits) as printed by `tetherctl token create`"
)]
pub struct MalformedToken;

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RngFailed;

/// `len` characters drawn uniformly from `[a-z0-9]`.
pub fn random_string(len: usize) -> Result<String, RngFailed> {
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf).map_err(|_| RngFailed)?;
        // Rejection sampling keeps the distribution uniform: 252 = 7 * 36.
        for b in buf.iter().filter(|b| **b < 252) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(*b % 36) as usize] as char);
        }
    }
    Ok(out)
}

impl JoinToken {
    /// A fresh random token.
    pub fn generate() -> Result<Self, RngFailed> {
        Ok(JoinToken {
            id: random_string(ID_LEN)?,
            secret: random_string(SECRET_LEN)?,
        })
    }

    /// Parses `<id>.<secret>`.
    pub fn parse(s: &str) -> Result<Self, MalformedToken> {
        let (id, secret) = s.trim().split_once('.').ok_or(MalformedToken)?;
        let ok = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| ALPHABET.contains(&b));
        if !ok(id, ID_LEN) || !ok(secret, SECRET_LEN) {
            return Err(MalformedToken);
        }
        Ok(JoinToken {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The full token, to show its owner once.
    pub fn reveal(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// What the hub stores: hex SHA-256 of the secret.
    pub fn secret_hash(&self) -> String {
        hash_secret(&self.secret)
    }

    /// Compares this token's secret with a stored hash in constant time.
    pub fn matches_hash(&self, stored_hex: &str) -> bool {
        self.secret_hash()
            .as_bytes()
            .ct_eq(stored_hex.as_bytes())
            .into()
    }
}

/// Checks that a token id looks like one (for `token revoke ID`).
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.len() == ID_LEN && id.bytes().all(|b| ALPHABET.contains(&b)) {
        Ok(())
    } else {
        Err(format!(
            "invalid token id {id:?}: expected {ID_LEN} lowercase letters or digits (see: tetherctl token list)"
        ))
    }
}

fn hash_secret(secret: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({}.<redacted>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_and_differ() {
        let a = JoinToken::generate().unwrap();
        let b = JoinToken::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(JoinToken::parse(&a.reveal()).unwrap(), a);
    }

    #[test]
    fn hashes_match_only_their_own_secret() {
        let a = JoinToken::generate().unwrap();
        let b = JoinToken::generate().unwrap();
        assert!(a.matches_hash(&a.secret_hash()));
        assert!(!b.matches_hash(&a.secret_hash()));
        assert!(!a.secret_hash().contains(&a.secret));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "abc",
            "abcdef.",
            ".x",
            "ABCDEF.0123456789abcdef0123456789abcdef",
            "abcdef.short",
        ] {
            assert_eq!(JoinToken::parse(bad), Err(MalformedToken), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = JoinToken::generate().unwrap();
        assert!(!format!("{t:?}").contains(&t.secret));
    }
}
