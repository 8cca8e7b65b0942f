//! Join tokens: minting, listing and revoking.

use std::time::Duration;

use tether_common::identity::validate_name;
use tether_common::labels::{self, Labels};
use tether_common::time::unix_now;
use tether_common::token::{self, JoinToken};

use crate::control::RecordLock;
use crate::control::error::HubError;
use crate::store::Batch;
use crate::store::records::Records;
use crate::store::records::{Put, TokenRecord};

/// What a new token is for.
#[derive(Debug)]
pub struct TokenSpec {
    pub cluster: String,
    pub labels: Labels,
    /// `None` means the hub's default.
    pub ttl: Option<Duration>,
    pub reusable: bool,
    pub created_by: String,
    pub allow_labels: Vec<String>,
}

/// Join tokens' operations.
#[derive(Debug, Clone)]
pub struct Tokens {
    records: Records,
    /// Held while reading, changing and writing back records other operations change too.
    write_lock: RecordLock,
    /// TTL of a token created without one, and the longest allowed.
    default_ttl: Duration,
    max_ttl: Duration,
}

impl Tokens {
    pub fn new(
        records: Records,
        write_lock: RecordLock,
        default_ttl: Duration,
        max_ttl: Duration,
    ) -> Self {
        Tokens {
            records,
            write_lock,
            default_ttl,
            max_ttl,
        }
    }
}

impl Tokens {
    /// Mints a token; the secret is returned once and only its hash is stored.
    pub async fn create_token(
        &self,
        spec: TokenSpec,
    ) -> Result<(JoinToken, TokenRecord), HubError> {
        validate_name(&spec.cluster)
            .map_err(|e| HubError::InvalidArgument(format!("cluster {e}")))?;
        for (k, v) in &spec.labels {
            labels::validate_key(k).map_err(HubError::InvalidArgument)?;
            labels::validate_value(v).map_err(HubError::InvalidArgument)?;
        }
        labels::check_count(spec.labels.len() + spec.allow_labels.len())
            .map_err(HubError::InvalidArgument)?;
        for k in &spec.allow_labels {
            labels::validate_key(k)
                .map_err(|e| HubError::InvalidArgument(format!("--allow-labels: {e}")))?;
        }
        let ttl = spec.ttl.unwrap_or(self.default_ttl);
        if ttl > self.max_ttl {
            return Err(HubError::InvalidArgument(format!(
                "token ttl {} exceeds this hub's maximum of {}",
                humantime::format_duration(ttl),
                humantime::format_duration(self.max_ttl)
            )));
        }
        if ttl.is_zero() {
            return Err(HubError::InvalidArgument(
                "token ttl must be positive".into(),
            ));
        }
        let _w = self.write_lock.lock().await;
        // Ids are short; on the rare collision with an existing token, draw again.
        let token = loop {
            let t =
                JoinToken::generate().map_err(|e| HubError::FailedPrecondition(e.to_string()))?;
            if self.records.token(&t.id)?.is_none() {
                break t;
            }
        };
        let now = unix_now();
        let record = TokenRecord {
            id: token.id.clone(),
            secret_sha256: token.secret_hash(),
            cluster: spec.cluster,
            labels: spec.labels,
            created_unix: now,
            expires_unix: now + ttl.as_secs() as i64,
            reusable: spec.reusable,
            uses: 0,
            revoked: false,
            created_by: spec.created_by,
            allow_labels: spec.allow_labels,
        };
        let mut batch = Batch::new();
        batch.put_token(&record);
        self.records.commit(&batch).await?;
        tracing::info!(token_id = %record.id, cluster = %record.cluster, by = %record.created_by, "join token created");
        Ok((token, record))
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>, HubError> {
        let mut tokens = self.records.tokens()?;
        tokens.sort_by_key(|t| t.created_unix);
        Ok(tokens)
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, HubError> {
        token::validate_id(id).map_err(HubError::InvalidArgument)?;
        let _w = self.write_lock.lock().await;
        let mut record = self
            .records
            .token(id)?
            .ok_or_else(|| HubError::token_not_found(id))?;
        record.revoked = true;
        let mut batch = Batch::new();
        batch.put_token(&record);
        self.records.commit(&batch).await?;
        tracing::info!(token_id = id, "join token revoked");
        Ok(record)
    }
}
