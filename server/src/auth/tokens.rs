//! Access and opaque tokens.
//!
//! * Access tokens are HS256 JWTs valid for 15 minutes. The algorithm is pinned: a token whose
//!   header names any other algorithm (including `none`) is refused before its signature is
//!   looked at, so a forged header cannot choose how it is verified.
//! * Refresh and password-reset tokens are opaque: 256 random bits, base64url without padding.
//!   Only their HMAC-SHA256 under `JWT_REFRESH_SECRET` is stored, so a leaked database does not
//!   yield usable tokens, and the key (a pepper kept outside the database) makes offline
//!   guessing pointless.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::AuthError;
use crate::config::Config;

/// Lifetime of an access token in seconds (15 minutes): short, because an access token cannot
/// be revoked except by bumping the user's token version.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;
/// Lifetime of a refresh token (30 days); every use rotates it.
pub const REFRESH_TOKEN_TTL: Duration = Duration::days(30);
/// Lifetime of a password-reset token (30 minutes).
pub const RESET_TOKEN_TTL: Duration = Duration::minutes(30);
/// Random bytes in an opaque token: 256 bits.
const OPAQUE_TOKEN_BYTES: usize = 32;
/// Length of an opaque token's text: 32 bytes in unpadded base64url.
const OPAQUE_TOKEN_CHARS: usize = 43;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user.
    pub sub: Uuid,
    /// The user's partnership when the token was issued. It can change while the token lives
    /// (accepting an invitation), so handlers that act on a partnership read it from the store.
    pub pid: Option<Uuid>,
    /// The user's token version when the token was issued; a password change or reset bumps the
    /// version, which makes every older token invalid.
    pub ver: i64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: i64,
    /// Unique id of this token, for tracing.
    pub jti: Uuid,
    /// The session the token belongs to: the refresh-token family of the login that issued it
    /// (devices registered with the token are tied to it, and signing out removes them).
    /// Absent in tokens issued before sessions were named, and in those of tools and tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// A freshly signed access token.
#[derive(Clone, Debug)]
pub struct IssuedAccessToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires (the `expires_in` of the login answer).
    pub expires_in: i64,
    /// What it says.
    pub claims: AccessClaims,
}

/// A new opaque token (refresh or password reset) and the hash to store for it.
#[derive(Clone)]
pub struct OpaqueToken {
    /// What the client receives; never stored, never logged.
    pub token: String,
    /// HMAC-SHA256 of the token as lower-case hex: what the database keeps.
    pub hash: String,
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpaqueToken")
            .field("token", &"<redacted>")
            .field("hash", &self.hash)
            .finish()
    }
}

/// The server's token keys, built once at start-up and shared through `AppState`.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    opaque_mac: Hmac<Sha256>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKeys(<secret>)")
    }
}

impl TokenKeys {
    /// Keys from the configuration: `JWT_SECRET` signs access tokens, `JWT_REFRESH_SECRET`
    /// keys the hashes of refresh and reset tokens.
    pub fn new(config: &Config) -> Self {
        Self::from_secrets(
            config.jwt_secret.as_bytes(),
            config.jwt_refresh_secret.as_bytes(),
        )
    }

    /// Keys from raw secrets (tests and tools that have no `Config`).
    pub fn from_secrets(jwt_secret: &[u8], opaque_hash_secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // The same server issues and checks tokens, so there is no clock skew to forgive.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        validation.validate_aud = false;
        let opaque_mac = <Hmac<Sha256> as Mac>::new_from_slice(opaque_hash_secret)
            .expect("HMAC-SHA256 accepts keys of any length");
        TokenKeys {
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            validation,
            opaque_mac,
        }
    }

    /// Signs an access token for `user_id` valid from `now` for [`ACCESS_TOKEN_TTL_SECS`],
    /// naming no session (tools and tests; logins use [`TokenKeys::issue_session_token`]).
    pub fn issue_access_token(
        &self,
        user_id: Uuid,
        partnership_id: Option<Uuid>,
        token_version: i64,
        now: DateTime<Utc>,
    ) -> Result<IssuedAccessToken, AuthError> {
        self.sign(user_id, partnership_id, token_version, None, now)
    }

    /// Signs an access token like [`TokenKeys::issue_access_token`] that belongs to the session
    /// `session_id` (the refresh-token family of the login), carried as `sid`.
    pub fn issue_session_token(
        &self,
        user_id: Uuid,
        partnership_id: Option<Uuid>,
        token_version: i64,
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<IssuedAccessToken, AuthError> {
        self.sign(
            user_id,
            partnership_id,
            token_version,
            Some(session_id),
            now,
        )
    }

    fn sign(
        &self,
        user_id: Uuid,
        partnership_id: Option<Uuid>,
        token_version: i64,
        session_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<IssuedAccessToken, AuthError> {
        let iat = now.timestamp();
        let claims = AccessClaims {
            sub: user_id,
            pid: partnership_id,
            ver: token_version,
            iat,
            exp: iat + ACCESS_TOKEN_TTL_SECS,
            jti: Uuid::new_v4(),
            sid: session_id,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(format!("cannot sign access token: {e}")))?;
        Ok(IssuedAccessToken {
            token,
            expires_in: ACCESS_TOKEN_TTL_SECS,
            claims,
        })
    }

    /// Checks an access token's algorithm (HS256 only), signature and expiry, and returns its
    /// claims. Any failure is [`AuthError::InvalidAccessToken`]; the reason is not told to
    /// the client.
    pub fn verify_access_token(&self, token: &str) -> Result<AccessClaims, AuthError> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                tracing::debug!(reason = %e, "access token refused");
                AuthError::InvalidAccessToken
            })
    }

    /// A new random opaque token and its hash.
    pub fn generate_opaque(&self) -> OpaqueToken {
        let mut bytes = [0u8; OPAQUE_TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = self.hash_opaque(&token);
        OpaqueToken { token, hash }
    }

    /// The at-rest hash of an opaque token: HMAC-SHA256 under the refresh secret, lower-case hex.
    pub fn hash_opaque(&self, token: &str) -> String {
        let mut mac = self.opaque_mac.clone();
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `token` has the shape of a token made by [`TokenKeys::generate_opaque`]; lets
    /// handlers refuse garbage without touching the database.
    pub fn looks_like_opaque(token: &str) -> bool {
        token.len() == OPAQUE_TOKEN_CHARS
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::from_secrets(
            b"an access secret of at least 32 bytes!!",
            b"a refresh secret of at least 32 bytes!",
        )
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn a_fresh_access_token_verifies_with_its_claims() {
        let keys = keys();
        let user = Uuid::new_v4();
        let pid = Some(Uuid::new_v4());
        let issued = keys
            .issue_access_token(user, pid, 3, Utc::now())
            .expect("sign");
        assert_eq!(issued.expires_in, 900);
        let claims = keys.verify_access_token(&issued.token).expect("verify");
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.sub, user);
        assert_eq!(claims.pid, pid);
        assert_eq!(claims.ver, 3);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn a_session_token_names_its_session_and_an_older_token_without_one_still_verifies() {
        let keys = keys();
        let session = Uuid::new_v4();
        let issued = keys
            .issue_session_token(Uuid::new_v4(), None, 0, session, Utc::now())
            .expect("sign");
        let claims = keys.verify_access_token(&issued.token).expect("verify");
        assert_eq!(claims.sid, Some(session));
        // A token signed before `sid` existed has no such claim at all.
        let plain = keys
            .issue_access_token(Uuid::new_v4(), None, 0, Utc::now())
            .expect("sign");
        let payload = plain.token.split('.').nth(1).expect("payload");
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64"))
                .expect("json");
        assert_eq!(json.get("sid"), None);
        assert_eq!(
            keys.verify_access_token(&plain.token).expect("verify").sid,
            None
        );
    }

    #[test]
    fn an_expired_access_token_is_refused() {
        let keys = keys();
        let sixteen_minutes_ago = Utc::now() - Duration::minutes(16);
        let issued = keys
            .issue_access_token(Uuid::new_v4(), None, 0, sixteen_minutes_ago)
            .expect("sign");
        assert!(matches!(
            keys.verify_access_token(&issued.token),
            Err(AuthError::InvalidAccessToken)
        ));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other = TokenKeys::from_secrets(b"another access secret, also long!!!!!", b"x");
        let issued = other
            .issue_access_token(Uuid::new_v4(), None, 0, Utc::now())
            .expect("sign");
        assert!(keys().verify_access_token(&issued.token).is_err());
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let keys = keys();
        let issued = keys
            .issue_access_token(Uuid::new_v4(), None, 0, Utc::now())
            .expect("sign");
        let parts: Vec<&str> = issued.token.split('.').collect();
        let mut claims = serde_json::to_value(&issued.claims).expect("json");
        claims["sub"] = serde_json::json!(Uuid::new_v4());
        let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
        assert!(keys.verify_access_token(&forged).is_err());
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let keys = keys();
        let issued = keys
            .issue_access_token(Uuid::new_v4(), None, 0, Utc::now())
            .expect("sign");
        let payload = b64(&serde_json::to_value(&issued.claims).expect("json"));
        let signature = issued.token.rsplit('.').next().unwrap_or_default();
        for alg in ["none", "None", "HS384", "HS512", "RS256"] {
            let header = b64(&serde_json::json!({"alg": alg, "typ": "JWT"}));
            for sig in ["", signature] {
                let forged = format!("{header}.{payload}.{sig}");
                assert!(
                    keys.verify_access_token(&forged).is_err(),
                    "alg {alg} with signature {sig:?} must be refused"
                );
            }
        }
    }

    #[test]
    fn a_token_signed_with_hs512_under_the_same_secret_is_refused() {
        let secret = b"an access secret of at least 32 bytes!!";
        let claims = AccessClaims {
            sub: Uuid::new_v4(),
            pid: None,
            ver: 0,
            iat: Utc::now().timestamp(),
            exp: Utc::now().timestamp() + 600,
            jti: Uuid::new_v4(),
            sid: None,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("sign");
        assert!(keys().verify_access_token(&token).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        let keys = keys();
        for token in ["", "abc", "a.b.c", "a.b", "....", "Bearer x.y.z"] {
            assert!(keys.verify_access_token(token).is_err(), "{token:?}");
        }
    }

    #[test]
    fn opaque_tokens_are_256_bit_base64url_and_hash_deterministically() {
        let keys = keys();
        let a = keys.generate_opaque();
        let b = keys.generate_opaque();
        assert_ne!(a.token, b.token);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a.token).map(|v| v.len()), Ok(32));
        assert!(TokenKeys::looks_like_opaque(&a.token));
        assert_eq!(a.hash, keys.hash_opaque(&a.token));
        assert_eq!(a.hash.len(), 64);
        assert!(a.hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!format!("{a:?}").contains(&a.token));
    }

    #[test]
    fn the_opaque_hash_depends_on_the_secret() {
        let other = TokenKeys::from_secrets(
            b"an access secret of at least 32 bytes!!",
            b"a different refresh secret, 32 bytes+",
        );
        let token = keys().generate_opaque();
        assert_ne!(other.hash_opaque(&token.token), token.hash);
    }

    #[test]
    fn known_hmac_vector() {
        // RFC 4231 test case 2.
        let keys = TokenKeys::from_secrets(b"unused", b"Jefe");
        assert_eq!(
            keys.hash_opaque("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn malformed_opaque_tokens_are_recognised() {
        assert!(!TokenKeys::looks_like_opaque(""));
        assert!(!TokenKeys::looks_like_opaque(&"a".repeat(42)));
        assert!(!TokenKeys::looks_like_opaque(&"a".repeat(44)));
        assert!(!TokenKeys::looks_like_opaque(&format!(
            "{}=",
            "a".repeat(42)
        )));
        assert!(!TokenKeys::looks_like_opaque(&format!(
            "{}+",
            "a".repeat(42)
        )));
    }
}
