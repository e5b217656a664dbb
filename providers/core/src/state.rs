//! What a resource is: one type. Recorded (in lineage), live (read from the backend) and prior
//! (last applied) are roles of it, named by the aliases below, not types of their own.

use serde::{Deserialize, Serialize};

use crate::Attributes;

/// Attributes and outputs (identifiers, versions, digests) of a resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResourceState {
    /// Comparable with [`crate::Desired::attributes`].
    pub attributes: Attributes,
    /// Identifiers, versions and digests the backend assigned; recorded in lineage.
    #[serde(default)]
    pub outputs: Attributes,
}

/// A resource as read from its backend now.
pub type LiveState = ResourceState;

/// A resource as last applied, from lineage.
pub type PriorState = ResourceState;
