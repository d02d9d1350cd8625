//! The REST calls the SDK needs. (Being implemented: see the signatures.)

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;

/// A user as the server shows them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Country.
    pub country: Option<String>,
    /// Monthly income.
    pub income: Option<Decimal>,
    /// Payday.
    pub payday: Option<String>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

/// What registering needs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Registration {
    /// Email.
    pub email: String,
    /// Password (10–128 characters).
    pub password: String,
    /// Display name.
    pub name: String,
    /// ISO 4217 currency (default USD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Monthly income.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub income: Option<Decimal>,
}

/// A signed-in session as login and register answer it.
#[derive(Clone, Debug, Deserialize)]
pub struct AuthSession {
    /// Access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The user.
    pub user: User,
}

/// A rotated token pair.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenPair {
    /// Access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// The other partner.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Person {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// A partnership as the server shows it.
#[derive(Clone, Debug, Deserialize)]
pub struct Partnership {
    /// Id (the document id is derived from it).
    pub id: Uuid,
    /// `pending`, `active` or `paused`.
    pub status: String,
    /// `inviter` or `invitee`.
    pub role: String,
    /// The partner once they accepted.
    pub partner: Option<Person>,
    /// Currency.
    pub currency: String,
    /// Approval threshold.
    pub approval_threshold: Decimal,
    /// `automerge:` URL of the document once active.
    pub document_url: Option<String>,
}

/// The REST client.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for the server at `base_url` (`http://host:port`).
    pub fn new(base_url: &str) -> Result<Api> {
        let _ = (&base_url, reqwest::Client::new());
        todo!()
    }
    /// The base URL.
    pub fn base_url(&self) -> &str {
        let _ = &self.http;
        &self.base
    }
    /// `ws://…/sync` or `wss://…/sync` for this server.
    pub fn sync_url(&self) -> String {
        todo!()
    }
    /// `POST /api/auth/register`.
    pub async fn register(&self, r: &Registration) -> Result<AuthSession> {
        let _ = r;
        todo!()
    }
    /// `POST /api/auth/login`.
    pub async fn login(&self, email: &str, password: &str) -> Result<AuthSession> {
        let _ = (email, password);
        todo!()
    }
    /// `POST /api/auth/refresh`; a 401 is `ClientError::SignedOut`.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        let _ = refresh_token;
        todo!()
    }
    /// `POST /api/auth/logout`.
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        let _ = refresh_token;
        todo!()
    }
    /// `GET /api/users/profile`.
    pub async fn profile(&self, access: &str) -> Result<User> {
        let _ = access;
        todo!()
    }
    /// `PUT /api/users/update-income`.
    pub async fn update_income(&self, access: &str, income: Decimal) -> Result<User> {
        let _ = (access, income);
        todo!()
    }
    /// `POST /api/partnerships/invite`.
    pub async fn invite(&self, access: &str, email: &str) -> Result<Partnership> {
        let _ = (access, email);
        todo!()
    }
    /// The ids of invitations the user received (`GET /api/partnerships/invitations`).
    pub async fn received_invitations(&self, access: &str) -> Result<Vec<Uuid>> {
        let _ = access;
        todo!()
    }
    /// `POST /api/partnerships/accept/{id}`.
    pub async fn accept(&self, access: &str, id: Uuid) -> Result<Partnership> {
        let _ = (access, id);
        todo!()
    }
    /// `GET /api/partnerships/current`; `None` on 404.
    pub async fn current_partnership(&self, access: &str) -> Result<Option<Partnership>> {
        let _ = access;
        todo!()
    }
    /// `GET /api/contributions/current` (the server creates this month in the document).
    pub async fn open_current_month(&self, access: &str) -> Result<()> {
        let _ = access;
        todo!()
    }
}
