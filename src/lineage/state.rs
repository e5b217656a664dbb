//! What lineage records of each resource, and the state at the lineage tip.

use std::collections::BTreeMap;

use mlops_provider_core::{Address, Attributes, Value};
use serde::{Deserialize, Serialize};

/// What lineage remembers of one managed resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub address: Address,
    pub provider: String,
    /// Shared between the records of one provider block (it is the same value for all of them).
    #[serde(default)]
    pub provider_config: std::sync::Arc<Value>,
    /// The attributes as applied (read back from the backend right after the apply).
    pub attributes: Attributes,
    /// Identifiers, versions, digests.
    #[serde(default)]
    pub outputs: Attributes,
    #[serde(default)]
    pub depends_on: Vec<Address>,
    /// The lineage edges with the versions they had at apply time, e.g. a model's datasets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Value>,
}

/// The state at the lineage tip.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub tip: Option<String>,
    pub resources: BTreeMap<Address, ResourceRecord>,
    /// The blob each record was read from: an apply reuses it for a record it leaves unchanged.
    pub blobs: Blobs,
}

/// Record blobs by address.
pub type Blobs = BTreeMap<Address, gix::ObjectId>;
