//! Typed ids: random UUIDs that never change, stored as text.

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
