//! `/api/devices`: the caller's push devices.
//!
//! A device is an FCM registration token (Android, iOS, or a web app on the Firebase SDK) or a
//! browser's Web Push subscription. It is tied to the session whose access token registered it:
//! signing out of that session (`POST /api/auth/logout`) removes it, and deleting the account
//! removes every device. A token or endpoint registered again — by the same user or, on a shared
//! phone, by the partner — is the same device: its one row is updated and moved to the caller.
//!
//! Web Push endpoints must be `https` URLs; outside production `http` to a loopback host
//! (`localhost`, `127.0.0.0/8`, `[::1]`) is accepted too, for a push service on the developer's
//! machine or in tests.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorBody, FieldErrors};
use crate::store::{DevicePlatform, DeviceRecord, DeviceTarget, NewDevice};
use crate::validation::push::{AuthSecret, EndpointSchemes, FcmToken, P256dhKey, WebPushEndpoint};

/// The `/api/devices` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/devices", get(list).post(register))
        .route("/api/devices/{id}", delete(remove))
}

/// The OpenAPI description of the device endpoints.
#[derive(OpenApi)]
#[openapi(
    paths(register, list, remove),
    components(schemas(RegisterDeviceRequest, WebPushRequest, WebPushKeys, DeviceView, WebPushView)),
    tags((name = "devices", description = "The caller's push-notification devices"))
)]
pub struct DevicesApi;

/// [`DevicesApi`]'s document, ready to merge.
pub fn openapi() -> utoipa::openapi::OpenApi {
    DevicesApi::openapi()
}

/// Body of `POST /api/devices`: the platform and exactly one of `fcm_token` and `web_push`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({
    "platform": "web",
    "web_push": {
        "endpoint": "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABm",
        "keys": {
            "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "auth": "BTBZMqHH6r4Tts7J_aSIgg"
        }
    }
}))]
pub struct RegisterDeviceRequest {
    /// `android`, `ios` or `web` (a Web Push subscription is always `web`).
    #[schema(required = true, value_type = DevicePlatform)]
    pub platform: Option<String>,
    /// An FCM registration token: printable ASCII, at most 4096 characters.
    #[schema(value_type = Option<String>, example = "fGz1Xk3ZQ0:APA91bH")]
    pub fcm_token: Option<String>,
    /// A browser's Web Push subscription, as `PushSubscription.toJSON()` gives it.
    pub web_push: Option<WebPushRequest>,
}

/// A Web Push subscription.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct WebPushRequest {
    /// The push service URL: `https`, at most 2048 characters.
    #[schema(required = true, value_type = String)]
    pub endpoint: Option<String>,
    /// The subscription's keys.
    #[schema(required = true, value_type = WebPushKeys)]
    pub keys: Option<WebPushKeys>,
}

/// A Web Push subscription's keys, base64url (padding optional).
#[derive(Default, Deserialize, ToSchema)]
pub struct WebPushKeys {
    /// The P-256 public key, uncompressed (65 bytes).
    #[schema(required = true, value_type = String)]
    pub p256dh: Option<String>,
    /// The 16-byte authentication secret.
    #[schema(required = true, value_type = String)]
    pub auth: Option<String>,
}

impl std::fmt::Debug for WebPushKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushKeys")
            .field("p256dh", &self.p256dh)
            .field("auth", &"<redacted>")
            .finish()
    }
}

/// A registered device as the API shows it. A Web Push subscription's keys are never shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "01937a3e-4b2c-7d11-9a3e-5f0c2b7e8d41",
    "platform": "android",
    "kind": "fcm",
    "fcm_token": "fGz1Xk3ZQ0:APA91bH",
    "created_at": "2026-12-03T09:30:00Z"
}))]
pub struct DeviceView {
    /// The device's id (for `DELETE /api/devices/{id}`).
    pub id: Uuid,
    /// The kind of app.
    pub platform: DevicePlatform,
    /// `fcm` or `web_push`.
    #[schema(example = "fcm")]
    pub kind: &'static str,
    /// The FCM registration token (`fcm` devices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fcm_token: Option<String>,
    /// The subscription's endpoint (`web_push` devices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_push: Option<WebPushView>,
    /// When it was last registered (RFC 3339).
    pub created_at: DateTime<Utc>,
}

/// The visible part of a Web Push subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebPushView {
    /// The push service URL.
    pub endpoint: String,
}

impl From<DeviceRecord> for DeviceView {
    fn from(d: DeviceRecord) -> Self {
        let (kind, fcm_token, web_push) = match d.target {
            DeviceTarget::Fcm { token } => ("fcm", Some(token), None),
            DeviceTarget::WebPush { endpoint, .. } => {
                ("web_push", None, Some(WebPushView { endpoint }))
            }
        };
        DeviceView {
            id: d.id,
            platform: d.platform,
            kind,
            fcm_token,
            web_push,
            created_at: d.created_at,
        }
    }
}

/// Registers the caller's device for push notifications, under the session of the access
/// token. A token or endpoint already registered is updated and moved to the caller (one
/// device, not two).
#[utoipa::path(post, path = "/api/devices", operation_id = "register_device", tag = "devices", security(("bearer" = [])),
    request_body = RegisterDeviceRequest,
    responses(
        (status = 201, description = "The device", body = DeviceView),
        (status = 400, description = "Malformed JSON or wrong types", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "`validation_failed`, per field (`platform`, `fcm_token`, `web_push.endpoint`, `web_push.keys.p256dh`, `web_push.keys.auth`)", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<RegisterDeviceRequest>,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
    let schemes = if state.config.is_production() {
        EndpointSchemes::HttpsOnly
    } else {
        EndpointSchemes::AlsoLoopbackHttp
    };
    let device = parse_device(body, schemes, user.session_id)?;
    let device = state
        .store
        .register_device(user.user_id, device, Utc::now())
        .await?;
    tracing::info!(user_id = %user.user_id, device_id = %device.id, "push device registered");
    Ok((StatusCode::CREATED, Json(device.into())))
}

/// The caller's devices, oldest registration first.
#[utoipa::path(get, path = "/api/devices", operation_id = "list_devices", tag = "devices", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's devices", body = [DeviceView]),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let devices = state.store.devices(user.user_id).await?;
    Ok(Json(devices.into_iter().map(DeviceView::from).collect()))
}

/// Removes one of the caller's devices: it receives no more notifications.
#[utoipa::path(delete, path = "/api/devices/{id}", operation_id = "remove_device", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The device's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "The caller has no device with this id", body = ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_device(user.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks every field of a registration and reports every problem at once.
fn parse_device(
    body: RegisterDeviceRequest,
    schemes: EndpointSchemes,
    session_id: Option<Uuid>,
) -> Result<NewDevice, ApiError> {
    let mut errors = FieldErrors::default();
    let platform = match body.platform.as_deref() {
        None | Some("") => {
            errors.push("platform", "is required");
            None
        }
        Some(raw) => {
            let platform = DevicePlatform::ALL.into_iter().find(|p| p.as_str() == raw);
            if platform.is_none() {
                errors.push("platform", "must be \"android\", \"ios\" or \"web\"");
            }
            platform
        }
    };
    let target = match (body.fcm_token, body.web_push) {
        (Some(_), Some(_)) => {
            errors.push("web_push", "must not be given with fcm_token");
            None
        }
        (None, None) => {
            errors.push("fcm_token", "is required unless web_push is given");
            None
        }
        (Some(token), None) => errors
            .check("fcm_token", FcmToken::parse(&token))
            .map(|token| DeviceTarget::Fcm {
                token: token.into_inner(),
            }),
        (None, Some(web_push)) => {
            if platform.is_some_and(|p| p != DevicePlatform::Web) {
                errors.push("platform", "must be \"web\" for a Web Push subscription");
            }
            parse_web_push(web_push, schemes, &mut errors)
        }
    };
    match (platform, target) {
        (Some(platform), Some(target)) if errors.is_empty() => Ok(NewDevice {
            platform,
            target,
            session_id,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// The Web Push subscription's three parts, each checked.
fn parse_web_push(
    body: WebPushRequest,
    schemes: EndpointSchemes,
    errors: &mut FieldErrors,
) -> Option<DeviceTarget> {
    let endpoint = errors.check(
        "web_push.endpoint",
        WebPushEndpoint::parse(body.endpoint.as_deref().unwrap_or_default(), schemes),
    );
    let keys = body.keys.unwrap_or_default();
    let p256dh = errors.check(
        "web_push.keys.p256dh",
        P256dhKey::parse(keys.p256dh.as_deref().unwrap_or_default()),
    );
    let auth = errors.check(
        "web_push.keys.auth",
        AuthSecret::parse(keys.auth.as_deref().unwrap_or_default()),
    );
    Some(DeviceTarget::WebPush {
        endpoint: endpoint?.into_inner(),
        p256dh: p256dh?.into_inner(),
        auth: auth?.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: serde_json::Value) -> Vec<String> {
        let body: RegisterDeviceRequest = serde_json::from_value(body).expect("request shape");
        match parse_device(body, EndpointSchemes::HttpsOnly, None) {
            Err(ApiError::Validation(errors)) => errors.0.into_keys().collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        assert_eq!(fields(serde_json::json!({})), ["fcm_token", "platform"]);
        assert_eq!(
            fields(serde_json::json!({"platform": "symbian", "fcm_token": "a b"})),
            ["fcm_token", "platform"]
        );
        assert_eq!(
            fields(serde_json::json!({"platform": "web", "fcm_token": "t", "web_push": {}})),
            ["web_push"]
        );
        assert_eq!(
            fields(serde_json::json!({"platform": "android", "web_push": {}})),
            [
                "platform",
                "web_push.endpoint",
                "web_push.keys.auth",
                "web_push.keys.p256dh"
            ]
        );
    }

    #[test]
    fn the_session_of_the_token_is_kept() {
        let session = Uuid::new_v4();
        let body: RegisterDeviceRequest =
            serde_json::from_value(serde_json::json!({"platform": "ios", "fcm_token": "tok"}))
                .expect("request shape");
        let device = parse_device(body, EndpointSchemes::HttpsOnly, Some(session))
            .map_err(|e| e.to_string())
            .expect("valid");
        assert_eq!(
            device,
            NewDevice {
                platform: DevicePlatform::Ios,
                target: DeviceTarget::Fcm {
                    token: "tok".into()
                },
                session_id: Some(session),
            }
        );
    }
}
