//! Identifiers: typed UUIDs for users, partnerships and document entities, and the
//! automerge-repo document id derived from a partnership id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUID v7), as the creator of an item makes it.
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

uuid_id!(
    /// A user account. Members of the document are keyed by it.
    UserId
);
uuid_id!(
    /// A partnership (two users). One document per partnership.
    PartnershipId
);
uuid_id!(
    /// The key of an entity (expense, goal, approval, message, goal contribution) in its map.
    EntityId
);

/// Namespace for ids the server derives deterministically (compensations), so that two servers
/// compensating the same merge write the same keys and converge. Public so other clients (the
/// TypeScript package's generated schema) derive the same ids.
pub const DERIVED_NAMESPACE: Uuid = Uuid::from_bytes([
    0x5b, 0x1e, 0x7a, 0x3c, 0x9d, 0x42, 0x4f, 0x08, 0xa1, 0x6e, 0x2c, 0x77, 0x90, 0x13, 0xd4, 0x5f,
]);

impl EntityId {
    /// A deterministic id derived from `parts` (UUID v5 in SplitSave's namespace).
    pub fn derived(parts: &[&str]) -> Self {
        let joined = parts.join("\u{1f}");
        Self(Uuid::new_v5(&DERIVED_NAMESPACE, joined.as_bytes()))
    }
}

/// The automerge-repo document id of a partnership's document: the partnership's 16 UUID bytes,
/// encoded bs58check as automerge-repo encodes its (random) document ids. Deriving it means no
/// lookup table is needed and a client can compute it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DocumentId(pub [u8; 16]);

/// Why a document id string could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentIdError {
    /// Not bs58check, or a bad checksum.
    #[error("document id is not valid bs58check")]
    Encoding,
    /// Decoded, but not 16 bytes.
    #[error("document id must be 16 bytes")]
    Length,
}

impl DocumentId {
    /// The document id of the given partnership.
    pub fn for_partnership(id: PartnershipId) -> Self {
        Self(*id.0.as_bytes())
    }

    /// The partnership whose document this is.
    pub fn partnership(&self) -> PartnershipId {
        PartnershipId(Uuid::from_bytes(self.0))
    }

    /// `automerge:<id>`, the URL stock automerge-repo clients pass to `repo.find`.
    pub fn url(&self) -> String {
        format!("automerge:{self}")
    }

    /// Parses a bare id or an `automerge:` URL (heads and path suffixes are ignored).
    pub fn parse(s: &str) -> Result<Self, DocumentIdError> {
        let bare = s.strip_prefix("automerge:").unwrap_or(s);
        let bare = bare.split(['#', '/']).next().unwrap_or_default();
        let bytes = bs58::decode(bare)
            .with_check(None)
            .into_vec()
            .map_err(|_| DocumentIdError::Encoding)?;
        let arr: [u8; 16] = bytes.try_into().map_err(|_| DocumentIdError::Length)?;
        Ok(Self(arr))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_id_round_trips_through_its_url() {
        let pid = PartnershipId::new_v7();
        let doc = DocumentId::for_partnership(pid);
        let url = doc.url();
        assert!(url.starts_with("automerge:"));
        let parsed = DocumentId::parse(&url).unwrap();
        assert_eq!(parsed, doc);
        assert_eq!(parsed.partnership(), pid);
        assert_eq!(DocumentId::parse(&format!("{url}#abc")).unwrap(), doc);
    }

    #[test]
    fn document_id_rejects_bad_checksum_and_length() {
        let doc = DocumentId::for_partnership(PartnershipId::new_v7()).to_string();
        let mut chars: Vec<char> = doc.chars().collect();
        chars[3] = if chars[3] == 'a' { 'b' } else { 'a' };
        let bad: String = chars.into_iter().collect();
        assert_eq!(DocumentId::parse(&bad), Err(DocumentIdError::Encoding));
        let short = bs58::encode([1u8; 8]).with_check().into_string();
        assert_eq!(DocumentId::parse(&short), Err(DocumentIdError::Length));
    }

    #[test]
    fn derived_ids_are_deterministic_and_distinct() {
        assert_eq!(
            EntityId::derived(&["a", "b"]),
            EntityId::derived(&["a", "b"])
        );
        assert_ne!(EntityId::derived(&["a", "b"]), EntityId::derived(&["ab"]));
    }
}
