//! Typed row identifiers, so a customer id cannot be passed where an extension
//! id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id_type!(
    ResellerId,
    CustomerId,
    ExtensionId,
    DeviceId,
    NumberId,
    LoginId,
    TokenId,
    PlanId,
    TrunkId,
    RingGroupId,
    BusinessHoursId,
    ConferenceRoomId,
    IvrMenuId,
);
