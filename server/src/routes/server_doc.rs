//! The server's own reads and writes of a partnership document, through its document actor.
//!
//! Server-owned parts of the document (`members`, `partnership.status`, the amounts of
//! `contributions`) follow the relational data: a change of income or name, a pause or resume
//! is written into the document here, so synced apps see it and the split uses it. Reads that
//! need the document itself (the members' incomes, which have no table) run inside the actor
//! too, so they see one consistent state of the document.
//!
//! Unlike [`crate::routes::shared::apply`], these calls also run on a paused partnership:
//! the server keeps its own fields up to date whatever the couple's state.

use automerge::transaction::Transaction;
use splitsave_sync_core::enums::PartnershipStatus as DocStatus;
use splitsave_sync_core::ids::{PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, OpError};
use splitsave_sync_core::read;
use splitsave_sync_core::schema::Member;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::routes::shared::api_error;
use crate::store::{PartnershipRecord, PartnershipStatus, UserRecord};

/// Runs `f` on the partnership's document inside its actor, as `user` (who is recorded as the
/// sender of any change `f` writes), and returns what `f` returned. Changes are committed and
/// fanned out like any REST write; a read-only `f` writes nothing and commits nothing.
pub async fn run<T, F>(state: &AppState, pid: Uuid, user: Uuid, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: Fn(&mut Transaction<'_>) -> Result<T, OpError> + Send + Sync + 'static,
{
    state
        .sync
        .apply(PartnershipId(pid), UserId(user), f)
        .await
        .map_err(api_error)
}

/// The income a member brings into the document: their income when it is in the partnership
/// currency (an income in another currency is left out rather than converted at a guessed
/// rate, and the split falls back to equal halves).
pub fn member_income(user: &UserRecord, currency: Currency) -> Option<MinorUnits> {
    if user.currency != currency.code() {
        return None;
    }
    user.income
        .and_then(|i| currency.to_minor_non_negative(i).ok())
}

/// Writes a user's name and income into their partnership's document, when they have one
/// (active or paused). Called after every change of name, income or currency.
pub async fn sync_member(state: &AppState, user: &UserRecord) -> Result<(), ApiError> {
    let Some(p) = state.store.current_partnership(user.id).await? else {
        return Ok(());
    };
    if !has_document(&p) {
        return Ok(());
    }
    let currency = Currency::parse(&p.currency).map_err(ApiError::internal)?;
    let member = Member {
        user_id: UserId(user.id),
        name: user.name.clone(),
        income: member_income(user, currency),
        slot: if p.user1_id == user.id { 1 } else { 2 },
    };
    run(state, p.id, user.id, move |tx| {
        let current = read::read_member(tx, &member.user_id.to_string())?;
        if current.as_ref() != Some(&member) {
            ops::server_set_member(tx, &member)?;
        }
        Ok(())
    })
    .await
}

/// Writes the partnership's status (paused or active) into its document.
pub async fn sync_status(
    state: &AppState,
    p: &PartnershipRecord,
    user: Uuid,
) -> Result<(), ApiError> {
    let status = match p.status {
        PartnershipStatus::Active => DocStatus::Active,
        PartnershipStatus::Paused => DocStatus::Paused,
        PartnershipStatus::Pending => return Ok(()),
    };
    run(state, p.id, user, move |tx| {
        if read::read_partnership(tx)?.status != status {
            ops::server_set_status(tx, status)?;
        }
        Ok(())
    })
    .await
}

fn has_document(p: &PartnershipRecord) -> bool {
    matches!(
        p.status,
        PartnershipStatus::Active | PartnershipStatus::Paused
    )
}
