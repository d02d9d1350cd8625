//! `/api/partnerships/*`: inviting a partner, answering invitations, the current partnership and
//! pausing it.
//!
//! Rules (enforced by the store inside one transaction, see `crate::store`):
//! - a user has at most one partnership that is pending (an invitation they sent), active or
//!   paused; inviting while having one, or inviting someone who has one, answers 409;
//! - an invitation goes to an email, registered or not; whoever holds that email may accept it;
//! - the partnership's currency is the inviter's currency; its approval threshold is given with
//!   the invitation or defaults to 100 major units of that currency ([`DEFAULT_APPROVAL_THRESHOLD`]);
//! - accepting creates the partnership document (sync-core) and stores its first snapshot in the
//!   same transaction, and withdraws the other invitations addressed to the accepting user;
//! - `DELETE /decline/{id}` is the invitee declining or the inviter withdrawing.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use splitsave_sync_core::document::{new_partnership_document, NewMember, NewPartnership};
use splitsave_sync_core::ids::{DocumentId, PartnershipId, UserId};
use splitsave_sync_core::time::Millis;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiJson, ApiPath, FieldErrors};
use crate::notify::mail::Mail;
use crate::routes::shared::{currency, load_user};
use crate::store::{
    AcceptInvitation, InvitationRecord, NewInvitation, NewSnapshot, PartnershipRecord,
    PartnershipStatus, UserRecord,
};
use crate::validation::Email;

/// Approval threshold of a new partnership when the invitation names none: 100 major units of
/// the partnership currency (the product's default).
pub const DEFAULT_APPROVAL_THRESHOLD: Decimal = Decimal::ONE_HUNDRED;

/// The `/api/partnerships` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/partnerships/invite", post(invite))
        .route("/api/partnerships/invitations", get(invitations))
        .route("/api/partnerships/accept/{id}", post(accept))
        .route("/api/partnerships/decline/{id}", delete(decline))
        .route("/api/partnerships/current", get(current))
        .route("/api/partnerships/status", put(set_status))
}

/// An invitation to send.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InviteRequest {
    /// Required: the partner's email; they need not be registered yet.
    #[schema(required = true, value_type = String, example = "partner@example.com")]
    pub email: Option<String>,
    /// Expenses above this amount (in the inviter's currency) need the partner's approval;
    /// positive, at most the currency's decimals. Default `"100"`.
    #[schema(value_type = Option<String>, example = "100")]
    pub approval_threshold: Option<Decimal>,
}

/// A person as the partnership endpoints show them: who they are (name, email, picture), not
/// their own budgeting (income, payday, personal allowance stay on their profile).
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonView {
    /// User id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
    /// The `https://` URL of their picture (at most 2048 characters), if they set one.
    #[schema(
        format = "uri",
        max_length = 2048,
        pattern = "^https://",
        example = "https://cdn.example.com/ann.png"
    )]
    pub avatar_url: Option<String>,
}

/// A pending invitation.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    /// The invitation's id, also the future partnership's id.
    pub id: Uuid,
    /// Who invited.
    pub inviter: PersonView,
    /// Who is invited.
    pub invitee_email: String,
    /// The partnership currency (the inviter's).
    pub currency: String,
    /// Approval threshold, decimal string.
    #[schema(value_type = String, example = "100")]
    pub approval_threshold: Decimal,
    /// Always `pending`.
    pub status: PartnershipStatus,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

/// The caller's invitations: those addressed to their email and those they sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationsView {
    /// Addressed to the caller.
    pub received: Vec<InvitationView>,
    /// Sent by the caller (at most one).
    pub sent: Vec<InvitationView>,
}

/// The caller's partnership.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnershipView {
    /// The partnership id.
    pub id: Uuid,
    /// `pending` (an invitation the caller sent), `active` or `paused`.
    pub status: PartnershipStatus,
    /// `inviter` or `invitee`.
    #[schema(example = "inviter")]
    pub role: &'static str,
    /// The partner, once they accepted.
    pub partner: Option<PersonView>,
    /// The email the invitation was sent to.
    pub invitee_email: String,
    /// The partnership currency.
    pub currency: String,
    /// Approval threshold, decimal string.
    #[schema(value_type = String, example = "100")]
    pub approval_threshold: Decimal,
    /// `automerge:` URL of the partnership document, once active; what automerge-repo clients
    /// pass to `repo.find`.
    #[schema(example = "automerge:2j9knpCseyhnK8izDmLpGP5WMdZQ")]
    pub document_url: Option<String>,
    /// Invitation time.
    pub created_at: DateTime<Utc>,
    /// Acceptance time.
    pub accepted_at: Option<DateTime<Utc>>,
}

/// A status change.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusRequest {
    /// Required: `paused` to pause, `active` to resume.
    #[schema(required = true, value_type = String, example = "paused")]
    pub status: Option<String>,
}

fn person(u: &UserRecord) -> PersonView {
    PersonView {
        id: u.id,
        name: u.name.clone(),
        email: u.email.clone(),
        avatar_url: u.avatar_url.clone(),
    }
}

fn invitation_view(i: InvitationRecord) -> InvitationView {
    InvitationView {
        id: i.partnership.id,
        inviter: PersonView {
            id: i.partnership.user1_id,
            name: i.inviter_name,
            email: i.inviter_email,
            avatar_url: i.inviter_avatar_url,
        },
        invitee_email: i.partnership.invitee_email,
        currency: i.partnership.currency,
        approval_threshold: i.partnership.approval_threshold,
        status: i.partnership.status,
        created_at: i.partnership.created_at,
    }
}

/// The partnership as `GET /api/partnerships/current` shows it to `user_id` (also the data
/// export's `partnership`).
pub(crate) async fn partnership_view(
    state: &AppState,
    p: PartnershipRecord,
    user_id: Uuid,
) -> Result<PartnershipView, ApiError> {
    let partner = match p.partner_of(user_id) {
        Some(id) => state.store.user_by_id(id).await?.as_ref().map(person),
        None => None,
    };
    let document_url = (p.status != PartnershipStatus::Pending)
        .then(|| DocumentId::for_partnership(PartnershipId(p.id)).url());
    Ok(PartnershipView {
        id: p.id,
        status: p.status,
        role: if p.user1_id == user_id {
            "inviter"
        } else {
            "invitee"
        },
        partner,
        invitee_email: p.invitee_email,
        currency: p.currency,
        approval_threshold: p.approval_threshold,
        document_url,
        created_at: p.created_at,
        accepted_at: p.accepted_at,
    })
}
/// Invites a partner by email.
#[utoipa::path(post, path = "/api/partnerships/invite", operation_id = "invite_partner", tag = "partnerships", security(("bearer" = [])),
    request_body = InviteRequest,
    responses(
        (status = 201, description = "Invitation sent", body = InvitationView),
        (status = 400, description = "Malformed JSON or wrong types", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 409, description = "`partnership_exists`: the caller already has one; `partner_has_partnership`: the invitee has one", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid email, the caller's own email, or invalid threshold", body = crate::error::ErrorBody),
    ))]
pub async fn invite(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<InvitationView>), ApiError> {
    let inviter = load_user(&state, &user).await?;
    let currency = currency(&inviter.currency)?;
    let mut errors = FieldErrors::default();
    let email = errors.check(
        "email",
        Email::parse(body.email.as_deref().unwrap_or_default()),
    );
    if email.as_ref().is_some_and(|e| e.as_str() == inviter.email) {
        errors.push("email", "you cannot invite yourself");
    }
    let threshold = body
        .approval_threshold
        .unwrap_or(DEFAULT_APPROVAL_THRESHOLD);
    let threshold = errors.check(
        "approval_threshold",
        currency
            .to_minor_positive(threshold)
            .map(|m| currency.from_minor(m))
            .map_err(|e| e.to_string()),
    );
    let (Some(email), Some(threshold)) = (email, threshold) else {
        return Err(ApiError::Validation(errors));
    };
    errors.into_result()?;
    let record = state
        .store
        .create_invitation(NewInvitation {
            id: Uuid::now_v7(),
            inviter_id: inviter.id,
            invitee_email: email.as_str().to_string(),
            currency: currency.code().to_string(),
            approval_threshold: threshold,
            now: Utc::now(),
        })
        .await;
    state.auth_cache.forget_all();
    let record = record?;
    tracing::info!(partnership_id = %record.id, user_id = %inviter.id, "invitation sent");
    send_invitation_mail(&state, &inviter, &email).await;
    queue_invitation_push(&state, &inviter, &email, record.id).await;
    let view = invitation_view(InvitationRecord {
        partnership: record,
        inviter_name: inviter.name,
        inviter_email: inviter.email,
        inviter_avatar_url: inviter.avatar_url,
    });
    Ok((StatusCode::CREATED, Json(view)))
}

/// Tells the invitee by mail. A mail failure does not undo the invitation: it is listed by
/// `GET /api/partnerships/invitations` either way.
async fn send_invitation_mail(state: &AppState, inviter: &UserRecord, to: &Email) {
    let mail = Mail {
        to: to.as_str().to_string(),
        subject: format!("{} invites you to SplitSave", inviter.name),
        body: format!(
            "{} ({}) invites you to share expenses and savings goals on SplitSave.\n\n\
             Sign in (or register with this email address) at {} to accept or decline.\n",
            inviter.name, inviter.email, state.config.public_url
        ),
    };
    if let Err(err) = state.mailer.send(mail).await {
        tracing::warn!(error = %err, "invitation mail not sent");
    }
}

/// Tells a registered invitee by push (docs/push.md), when push notifications are on. Queued
/// right after the invitation is stored, not in its transaction: a crash in between loses the
/// push, never the invitation, which the invitee still finds by mail and in
/// `GET /api/partnerships/invitations`.
async fn queue_invitation_push(
    state: &AppState,
    inviter: &UserRecord,
    to: &Email,
    invitation: Uuid,
) {
    let Some(push) = state.sync.push() else {
        return;
    };
    let invitee = match state.store.user_by_email(to.as_str()).await {
        Ok(Some(user)) => user,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(error = %err, "invitation push not queued");
            return;
        }
    };
    let notification = splitsave_sync_core::notifications::invitation(
        splitsave_sync_core::ids::UserId(invitee.id),
        &invitation.to_string(),
        &inviter.name,
    );
    let rows = crate::notify::push_outbox::outbox_rows(
        Some(invitation),
        &[notification],
        push.give_up_after,
    );
    match state.store.enqueue_notifications(&rows, Utc::now()).await {
        Ok(_) => push.wake.notify_one(),
        Err(err) => tracing::warn!(error = %err, "invitation push not queued"),
    }
}

/// The caller's pending invitations, received and sent.
#[utoipa::path(get, path = "/api/partnerships/invitations", operation_id = "list_invitations", tag = "partnerships", security(("bearer" = [])),
    responses(
        (status = 200, description = "Pending invitations", body = InvitationsView),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
    ))]
pub async fn invitations(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<InvitationsView>, ApiError> {
    let me = load_user(&state, &user).await?;
    let all = state.store.invitations_for(me.id, &me.email).await?;
    let (sent, received): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|i| i.partnership.user1_id == me.id);
    Ok(Json(InvitationsView {
        received: received.into_iter().map(invitation_view).collect(),
        sent: sent.into_iter().map(invitation_view).collect(),
    }))
}

/// Accepts an invitation addressed to the caller: the partnership becomes active and its
/// document is created.
#[utoipa::path(post, path = "/api/partnerships/accept/{id}", operation_id = "accept_invitation", tag = "partnerships", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The invitation id")),
    responses(
        (status = 200, description = "The active partnership", body = PartnershipView),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No such pending invitation for the caller", body = crate::error::ErrorBody),
        (status = 409, description = "`partnership_exists`: the caller already has one", body = crate::error::ErrorBody),
    ))]
pub async fn accept(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<PartnershipView>, ApiError> {
    let me = load_user(&state, &user).await?;
    let invitation = state
        .store
        .partnership_by_id(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if invitation.status != PartnershipStatus::Pending || invitation.invitee_email != me.email {
        return Err(ApiError::NotFound);
    }
    let inviter = state
        .store
        .user_by_id(invitation.user1_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let currency = currency(&invitation.currency)?;
    let threshold = currency
        .to_minor_positive(invitation.approval_threshold)
        .map_err(ApiError::internal)?;
    let now = Utc::now();
    let new = NewPartnership {
        id: PartnershipId(id),
        currency,
        approval_threshold: threshold,
        members: [
            NewMember {
                user_id: UserId(inviter.id),
                name: inviter.name.clone(),
                income: crate::routes::server_doc::member_income(&inviter, currency),
                slot: 1,
            },
            NewMember {
                user_id: UserId(me.id),
                name: me.name.clone(),
                income: crate::routes::server_doc::member_income(&me, currency),
                slot: 2,
            },
        ],
        created_at: Millis(now.timestamp_millis()),
    };
    let doc = new_partnership_document(&new).map_err(ApiError::internal)?;
    let snapshot = NewSnapshot {
        version: 0,
        heads: doc.get_heads().iter().map(|h| h.to_string()).collect(),
        change_count: i64::try_from(doc.get_changes(&[]).len()).unwrap_or(i64::MAX),
        bytes: doc.save(),
    };
    let record = state
        .store
        .accept_invitation(AcceptInvitation {
            partnership_id: id,
            user_id: me.id,
            email: me.email.clone(),
            snapshot,
            now,
        })
        .await;
    state.auth_cache.forget_all();
    let record = record?;
    tracing::info!(partnership_id = %id, user_id = %me.id, "invitation accepted");
    Ok(Json(partnership_view(&state, record, me.id).await?))
}

/// Declines an invitation addressed to the caller, or withdraws one the caller sent.
#[utoipa::path(delete, path = "/api/partnerships/decline/{id}", operation_id = "decline_invitation", tag = "partnerships", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The invitation id")),
    responses(
        (status = 204, description = "Invitation deleted"),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No such pending invitation for the caller", body = crate::error::ErrorBody),
    ))]
pub async fn decline(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let me = load_user(&state, &user).await?;
    let declined = state.store.decline_invitation(id, me.id, &me.email).await;
    state.auth_cache.forget_all();
    declined?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's partnership (pending as inviter, active or paused), with the document URL once
/// active; 404 `not_found` when there is none.
#[utoipa::path(get, path = "/api/partnerships/current", operation_id = "current_partnership", tag = "partnerships", security(("bearer" = [])),
    responses(
        (status = 200, description = "The partnership", body = PartnershipView),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No partnership", body = crate::error::ErrorBody),
    ))]
pub async fn current(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<PartnershipView>, ApiError> {
    let p = state
        .store
        .current_partnership(user.user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(partnership_view(&state, p, user.user_id).await?))
}

/// Pauses (`paused`) or resumes (`active`) the caller's partnership; the status is written into
/// its document too, so synced apps see it.
#[utoipa::path(put, path = "/api/partnerships/status", operation_id = "set_partnership_status", tag = "partnerships", security(("bearer" = [])),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The partnership", body = PartnershipView),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No partnership", body = crate::error::ErrorBody),
        (status = 409, description = "`partnership_not_active`: still an invitation", body = crate::error::ErrorBody),
        (status = 422, description = "Status other than `active` or `paused`", body = crate::error::ErrorBody),
    ))]
pub async fn set_status(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<StatusRequest>,
) -> Result<Json<PartnershipView>, ApiError> {
    let status = match body.status.as_deref() {
        Some("active") => PartnershipStatus::Active,
        Some("paused") => PartnershipStatus::Paused,
        None => {
            return Err(ApiError::Validation(
                FieldErrors::default().add("status", "is required"),
            ))
        }
        Some(_) => {
            return Err(ApiError::Validation(
                FieldErrors::default().add("status", "must be \"active\" or \"paused\""),
            ))
        }
    };
    let p = state
        .store
        .current_partnership(user.user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let updated = state
        .store
        .set_partnership_status(p.id, user.user_id, status)
        .await;
    state.auth_cache.forget_all();
    let updated = updated?;
    crate::routes::server_doc::sync_status(&state, &updated, user.user_id).await?;
    tracing::info!(partnership_id = %p.id, user_id = %user.user_id, status = %status, "partnership status changed");
    Ok(Json(partnership_view(&state, updated, user.user_id).await?))
}
