//! Presence: the ephemeral messages that tell a partner when the other comes online or goes
//! offline, with the last-seen time. The payload's encoding is sync-core's
//! ([`splitsave_sync_core::presence`]), shared with the SDK that reads it.

use chrono::{DateTime, SecondsFormat, Utc};
use splitsave_sync_core::ids::UserId;

pub use splitsave_sync_core::presence::{decode, Presence};

/// The payload announcing `user` online or offline at `at`.
pub fn encode(user: UserId, online: bool, at: DateTime<Utc>) -> Vec<u8> {
    splitsave_sync_core::presence::encode(
        user,
        online,
        &at.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_round_trips() {
        let user = UserId::new_v7();
        let p = decode(&encode(user, false, Utc::now())).unwrap();
        assert_eq!(p.kind, "partner:offline");
        assert_eq!(p.user_id, user.to_string());
        assert!(DateTime::parse_from_rfc3339(&p.last_seen).is_ok());
    }
}
