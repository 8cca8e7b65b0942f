//! Each cluster's copy of a workload ([`Renderer`]), and the reference counts of the stored
//! bundles those copies share ([`BundleChanges`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tether_common::labels::Labels;
use tether_common::workload::bundle::{self, Bundle};
use tether_common::workload::{self, Workload};

use crate::store::Batch;
use crate::store::StoreError;
use crate::store::records::{Put, Records};

/// One cluster's rendered copy.
#[derive(Debug, Clone)]
pub struct Copy {
    pub(crate) hash: String,
    pub(crate) json: Arc<Vec<u8>>,
}

/// What makes copies differ: which overrides match, and the replica share.
type CopyKey = (Vec<bool>, Option<u32>);

/// Renders copies for clusters, once per distinct set of matching overrides and replica
/// share: ten thousand clusters with the same labels cost one render.
pub struct Renderer<'a> {
    workload: &'a Workload,
    max_size: usize,
    /// A team's workload carries where its objects may go.
    confine: Option<bundle::Confinement>,
    cache: HashMap<CopyKey, Copy>,
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(
        workload: &'a Workload,
        max_size: usize,
        confine: Option<bundle::Confinement>,
    ) -> Self {
        Renderer {
            workload,
            max_size,
            confine,
            cache: HashMap::new(),
        }
    }

    /// The copy for a cluster with these labels and replica share, or why there is none
    /// (an override that does not apply, a copy over the size limit).
    pub(crate) fn copy_for(
        &mut self,
        cluster: &str,
        labels: &Labels,
        share: Option<u32>,
    ) -> Result<Copy, String> {
        let overrides: Vec<bool> = self
            .workload
            .spec
            .overrides
            .iter()
            .map(|o| o.cluster_selector.matches(labels))
            .collect();
        let key = (overrides, share);
        if let Some(copy) = self.cache.get(&key) {
            return Ok(copy.clone());
        }
        let manifests = workload::render_with_share(self.workload, cluster, labels, share)?;
        let mut b = Bundle::new(self.workload, manifests);
        b.confine = self.confine.clone();
        let json = b.to_json();
        if json.len() > self.max_size {
            return Err(format!(
                "workload {:?}: the copy rendered for cluster {cluster} is {} bytes, over this hub's limit of {} bytes (--max-bundle-size)",
                self.workload.metadata.name,
                json.len(),
                self.max_size
            ));
        }
        let copy = Copy {
            hash: bundle::hash(&json),
            json: Arc::new(json),
        };
        self.cache.insert(key, copy.clone());
        Ok(copy)
    }
}

/// Changes to bundle reference counts, and the content of bundles that may be new.
#[derive(Debug, Default, Clone)]
pub struct BundleChanges {
    pub(crate) delta: BTreeMap<String, i64>,
    content: HashMap<String, Arc<Vec<u8>>>,
}

impl BundleChanges {
    /// One more assignment holds `copy`.
    pub(crate) fn add(&mut self, copy: &Copy) {
        *self.delta.entry(copy.hash.clone()).or_default() += 1;
        self.content
            .entry(copy.hash.clone())
            .or_insert_with(|| copy.json.clone());
    }

    /// One assignment less holds the bundle `hash`.
    pub(crate) fn remove(&mut self, hash: &str) {
        if !hash.is_empty() {
            *self.delta.entry(hash.to_string()).or_default() -= 1;
        }
    }

    /// Adds the new counts to `batch`, storing a bundle when its first holder arrives (and
    /// dropping it with its last: the count's record goes with it).
    pub(crate) fn write(self, records: &Records, batch: &mut Batch) -> Result<(), StoreError> {
        for (hash, delta) in self.delta {
            if delta == 0 {
                continue;
            }
            let current = records.bundle_refs(&hash)?;
            let refs = (current as i64 + delta).max(0) as u64;
            if current == 0
                && refs > 0
                && let Some(json) = self.content.get(&hash)
            {
                batch.put_bundle(&hash, &bundle::gzip(json));
            }
            batch.put_bundle_refs(&hash, refs);
        }
        Ok(())
    }
}
