//! Where a device receives push notifications, as a client registers it: an FCM registration
//! token, or the three parts of a browser's Web Push subscription (`PushSubscription.toJSON()`).
//! The server posts to the endpoint and encrypts to the keys, so each is checked before anything
//! is stored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::Uri;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// Longest FCM registration token accepted (today's are about 160 characters).
pub const FCM_TOKEN_MAX_LEN: usize = 4096;
/// Longest Web Push endpoint accepted.
pub const ENDPOINT_MAX_LEN: usize = 2048;
/// Length of an uncompressed P-256 public key (`0x04`, then x and y).
const P256_UNCOMPRESSED_LEN: usize = 65;
/// Length of a Web Push authentication secret (RFC 8291).
const AUTH_SECRET_LEN: usize = 16;
/// Longest base64url text of either key worth decoding.
const KEY_MAX_CHARS: usize = 128;

/// Base64url with or without padding: browsers send it without, some libraries with.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An FCM registration token: 1 to [`FCM_TOKEN_MAX_LEN`] printable ASCII characters, no spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FcmToken(String);

impl FcmToken {
    /// Checks a token as the app sent it (not trimmed: a token is opaque).
    pub fn parse(raw: &str) -> Result<FcmToken, String> {
        if raw.is_empty() {
            return Err("is required".into());
        }
        if raw.len() > FCM_TOKEN_MAX_LEN {
            return Err(format!("must be at most {FCM_TOKEN_MAX_LEN} characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces".into());
        }
        Ok(FcmToken(raw.to_string()))
    }

    /// The token.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Which URL schemes a Web Push endpoint may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointSchemes {
    /// `https` only, to a public host: production. The server posts wherever the endpoint
    /// says, so an endpoint naming a private, loopback or link-local address (or a name only a
    /// local network resolves, such as `*.internal`) would let any user make the server post
    /// into its own network; such endpoints are refused here, and names that resolve to such
    /// addresses are refused when sending ([`is_public_ip`]).
    HttpsOnly,
    /// `https`, or `http` to a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`): development
    /// and tests, whose push service runs on the same machine without TLS.
    AlsoLoopbackHttp,
}

/// A Web Push endpoint: an absolute `https` URL (see [`EndpointSchemes`] for `http`) with a
/// host and no user name or password, at most [`ENDPOINT_MAX_LEN`] characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebPushEndpoint(String);

impl WebPushEndpoint {
    /// Checks an endpoint as the browser gave it.
    pub fn parse(raw: &str, schemes: EndpointSchemes) -> Result<WebPushEndpoint, String> {
        if raw.is_empty() {
            return Err("is required".into());
        }
        if raw.len() > ENDPOINT_MAX_LEN {
            return Err(format!("must be at most {ENDPOINT_MAX_LEN} characters"));
        }
        let must = match schemes {
            EndpointSchemes::HttpsOnly => "must be an https URL",
            EndpointSchemes::AlsoLoopbackHttp => {
                "must be an https URL (or http to localhost, 127.0.0.1 or [::1])"
            }
        };
        let uri: Uri = raw.parse().map_err(|_| must.to_string())?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(must.into());
        };
        let host = authority.host();
        if host.is_empty() || authority.as_str().contains('@') {
            return Err(must.into());
        }
        let allowed = scheme.eq_ignore_ascii_case("https")
            || (scheme.eq_ignore_ascii_case("http")
                && schemes == EndpointSchemes::AlsoLoopbackHttp
                && is_loopback(host));
        if !allowed {
            return Err(must.into());
        }
        if schemes == EndpointSchemes::HttpsOnly && !is_public_host(host) {
            return Err("must be a push service's public https URL".into());
        }
        Ok(WebPushEndpoint(raw.to_string()))
    }

    /// The endpoint.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Whether a URL's host names this machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
            .is_some_and(|ip| ip.is_loopback())
}

/// Whether a URL's host may be a public push service: a name with a dot outside the suffixes
/// only a local network resolves, or an IP address that is globally routable ([`is_public_ip`]).
/// Names are checked again when sending, against what they resolve to.
pub fn is_public_host(host: &str) -> bool {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return is_public_ip(ip);
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    const LOCAL_SUFFIXES: [&str; 6] = [
        "localhost",
        "local",
        "internal",
        "intranet",
        "lan",
        "home.arpa",
    ];
    name.contains('.')
        && !LOCAL_SUFFIXES
            .iter()
            .any(|s| name == *s || name.ends_with(&format!(".{s}")))
}

/// Whether an address is globally routable: not unspecified, loopback, private (RFC 1918,
/// IPv6 unique local), shared (100.64/10), link-local (which holds cloud metadata services),
/// documentation, benchmarking, multicast or reserved; IPv4 inside IPv6 (mapped, NAT64) is
/// judged as IPv4. The standard library's `is_global` is not stable yet.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return is_public_v4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || ip.is_documentation()
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || ip.is_multicast()
        || a >= 240) // reserved and broadcast
}

/// A subscription's public key (`keys.p256dh`): a point of the P-256 curve, uncompressed
/// (65 bytes), base64url. Kept as base64url without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P256dhKey(String);

impl P256dhKey {
    /// Decodes the key and checks that it is a point of the curve.
    pub fn parse(raw: &str) -> Result<P256dhKey, String> {
        const INVALID: &str = "must be an uncompressed P-256 public key (65 bytes), base64url";
        let bytes = decode(raw).ok_or(INVALID)?;
        if bytes.len() != P256_UNCOMPRESSED_LEN || p256::PublicKey::from_sec1_bytes(&bytes).is_err()
        {
            return Err(INVALID.into());
        }
        Ok(P256dhKey(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The key, base64url without padding.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A subscription's authentication secret (`keys.auth`): 16 bytes, base64url. Kept as base64url
/// without padding.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSecret(String);

impl AuthSecret {
    /// Decodes the secret and checks its length.
    pub fn parse(raw: &str) -> Result<AuthSecret, String> {
        const INVALID: &str = "must be 16 bytes, base64url";
        match decode(raw) {
            Some(bytes) if bytes.len() == AUTH_SECRET_LEN => {
                Ok(AuthSecret(URL_SAFE_NO_PAD.encode(bytes)))
            }
            _ => Err(INVALID.into()),
        }
    }

    /// The secret, base64url without padding.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for AuthSecret {
    /// Whoever holds the secret can read the device's notifications.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthSecret(<redacted>)")
    }
}

/// Base64url (padding optional) of a short value; `None` when it is not.
fn decode(raw: &str) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() > KEY_MAX_CHARS {
        return None;
    }
    BASE64URL.decode(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public key of RFC 8291's example (section 5), uncompressed.
    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";

    #[test]
    fn an_fcm_token_is_printable_ascii_of_bounded_length() {
        assert!(FcmToken::parse("fGz1:APA91bH-x_y").is_ok());
        assert_eq!(FcmToken::parse(""), Err("is required".into()));
        assert!(FcmToken::parse("has space").is_err());
        assert!(FcmToken::parse("tab\there").is_err());
        assert!(FcmToken::parse("é").is_err());
        assert!(FcmToken::parse(&"a".repeat(FCM_TOKEN_MAX_LEN)).is_ok());
        assert_eq!(
            FcmToken::parse(&"a".repeat(FCM_TOKEN_MAX_LEN + 1)),
            Err("must be at most 4096 characters".into())
        );
    }

    #[test]
    fn an_endpoint_is_https_and_http_only_to_loopback_when_allowed() {
        use EndpointSchemes::{AlsoLoopbackHttp, HttpsOnly};
        let ok = |url: &str, schemes| WebPushEndpoint::parse(url, schemes).is_ok();
        assert!(ok("https://fcm.googleapis.com/fcm/send/abc:def", HttpsOnly));
        assert!(ok(
            "https://updates.push.services.mozilla.com/wpush/v2/x",
            HttpsOnly
        ));
        for loopback in [
            "http://127.0.0.1:8080/push/1",
            "http://localhost/push",
            "http://[::1]:9000/p",
            "http://127.1.2.3/p",
        ] {
            assert!(ok(loopback, AlsoLoopbackHttp), "{loopback}");
            assert!(!ok(loopback, HttpsOnly), "{loopback}");
        }
        for bad in [
            "",
            "http://push.example.com/x",
            "http://10.0.0.1/x",
            "http://localhost.example.com/x",
            "ftp://push.example.com/x",
            "https://",
            "/relative/path",
            "push.example.com/x",
            "https://user:pass@push.example.com/x",
            "https://push.example.com/a b",
            "javascript:alert(1)",
        ] {
            assert!(!ok(bad, AlsoLoopbackHttp), "{bad:?}");
        }
        // In production an endpoint must name a public host.
        for private in [
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://10.1.2.3/x",
            "https://172.16.0.9/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://[64:ff9b::a00:1]/x",
            "https://metadata.google.internal/x",
            "https://printer.local/x",
            "https://router.home.arpa/x",
            "https://intranet/x",
        ] {
            assert_eq!(
                WebPushEndpoint::parse(private, HttpsOnly),
                Err("must be a push service's public https URL".into()),
                "{private}"
            );
        }
        assert!(ok("https://8.8.8.8/x", HttpsOnly));
        assert!(ok("https://[2606:4700::1111]/x", HttpsOnly));
        assert!(ok("https://[::ffff:8.8.8.8]/x", HttpsOnly));
        let long = format!("https://push.example.com/{}", "a".repeat(ENDPOINT_MAX_LEN));
        assert_eq!(
            WebPushEndpoint::parse(&long, HttpsOnly),
            Err("must be at most 2048 characters".into())
        );
    }

    #[test]
    fn a_p256dh_key_is_a_point_of_the_curve() {
        let key = P256dhKey::parse(P256DH).expect("valid");
        assert_eq!(key.clone().into_inner(), P256DH);
        // Padded input is accepted and stored without padding.
        let padded = format!("{P256DH}=");
        assert_eq!(
            P256dhKey::parse(&padded).map(P256dhKey::into_inner),
            Ok(P256DH.into())
        );
        // 65 bytes that are no point of the curve, a compressed key, too short, not base64url.
        let mut off_curve = URL_SAFE_NO_PAD.decode(P256DH).expect("decode");
        off_curve[64] ^= 1;
        let compressed = {
            let mut bytes = URL_SAFE_NO_PAD.decode(P256DH).expect("decode");
            bytes.truncate(33);
            bytes[0] = 0x02;
            bytes
        };
        for bad in [
            URL_SAFE_NO_PAD.encode(&off_curve),
            URL_SAFE_NO_PAD.encode(&compressed),
            URL_SAFE_NO_PAD.encode([4u8; 16]),
            "not base64url!".to_string(),
            String::new(),
        ] {
            assert!(P256dhKey::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_auth_secret_is_sixteen_bytes_and_never_printed() {
        let secret = AuthSecret::parse("BTBZMqHH6r4Tts7J_aSIgg").expect("valid");
        assert_eq!(format!("{secret:?}"), "AuthSecret(<redacted>)");
        assert_eq!(secret.into_inner(), "BTBZMqHH6r4Tts7J_aSIgg");
        assert!(AuthSecret::parse("BTBZMqHH6r4Tts7J_aSIgg==").is_ok());
        assert!(AuthSecret::parse(&URL_SAFE_NO_PAD.encode([1u8; 15])).is_err());
        assert!(AuthSecret::parse(&URL_SAFE_NO_PAD.encode([1u8; 17])).is_err());
        assert!(AuthSecret::parse("").is_err());
    }
}
