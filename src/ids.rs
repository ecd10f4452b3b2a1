//! Typed ids: random UUIDs that never change, stored as text; and [`time_ordered`] for rows
//! that are written once, in time order, under ids that are not secrets.

use rand::RngCore;

/// A fresh UUID whose first 48 bits are the current Unix time in milliseconds and whose other
/// 74 bits (beside the version and variant) are random: RFC 9562's version 7, without its
/// optional counter, so that no id tells the next. Rows keyed by such ids arrive at the end of
/// their index instead of at a random page of it, which on SQLite saves a page written per
/// index and commit (README: Performance). For ids that are no secret and whose time of making
/// is none either (an audit event's, a sign-in's): 74 random bits keep them unguessable, but
/// anyone who sees one learns when it was made.
pub fn time_ordered() -> uuid::Uuid {
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let millis = u64::try_from(crate::clock::wall_ms()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                $name(uuid::Uuid::new_v4())
            }
            /// Parses the text form; `None` when it is not a UUID.
            pub fn parse(raw: &str) -> Option<Self> {
                uuid::Uuid::parse_str(raw.trim()).ok().map($name)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// An account's stable id (the OIDC `sub`).
    AccountId
);
uuid_id!(
    /// An organization's id.
    OrgId
);
uuid_id!(
    /// An API token's id.
    ApiTokenId
);
uuid_id!(
    /// A SAML IdP connection's id.
    SamlConnectionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_sort_by_their_time_and_never_repeat() {
        let first = time_ordered();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later: Vec<uuid::Uuid> = (0..1_000).map(|_| time_ordered()).collect();

        assert_eq!(first.get_version(), Some(uuid::Version::SortRand));
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
        for id in &later {
            assert!(id.to_string() > first.to_string(), "{id} after {first}");
            assert!(id.simple().to_string() > first.simple().to_string());
        }
        let distinct: std::collections::HashSet<_> = later.iter().collect();
        assert_eq!(distinct.len(), later.len());
    }

    /// No counter: ids made in one millisecond are not in the order they were made (a counter
    /// would make each the one before it plus one), so none tells the next.
    #[test]
    fn time_ordered_ids_of_one_millisecond_are_random_among_themselves() {
        let ids: Vec<u128> = (0..1_000).map(|_| time_ordered().as_u128()).collect();
        let same_ms = ids.windows(2).filter(|w| w[0] >> 80 == w[1] >> 80);
        let (mut rising, mut falling) = (0, 0);
        for pair in same_ms {
            if pair[1] > pair[0] {
                rising += 1;
            } else {
                falling += 1;
            }
        }
        assert!(
            rising + falling > 100,
            "{rising} + {falling} pairs in one millisecond"
        );
        assert!(
            falling > 0 && rising > 0,
            "{rising} rising, {falling} falling"
        );
    }
}
