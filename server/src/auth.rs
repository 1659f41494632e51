//! Access tokens (JWT, HS256) and the extractor that checks them before a
//! handler reads anything else.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mobile_schema::ids::{DeviceId, UserId};
use mobile_schema::region::RegionCode;
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sync_protocol::ReplicaId;

use crate::accounts::{AccountError, User};
use crate::error::ApiError;
use crate::startup::AppState;

/// What an access token says. Role and scope are not in it: they are read from
/// the user record on each request, so a change takes effect at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub dev: DeviceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rep: Option<ReplicaId>,
    /// The device's session generation at issue: a bump (theft detection, a
    /// revocation, a new owner) ends the token before it expires.
    #[serde(default)]
    pub r#gen: u64,
    pub iat: u64,
    pub exp: u64,
}

/// The signing key and its id.
#[derive(Clone)]
pub struct TokenKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl_s: u64,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl_s: u64) -> Self {
        // The key id names the key without revealing it.
        let kid = hex::encode(&Sha256::digest(secret)[..8]);
        Self {
            kid,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl_s,
        }
    }

    pub fn issue(
        &self,
        user: UserId,
        device: DeviceId,
        replica: Option<ReplicaId>,
        generation: u64,
        now_s: u64,
    ) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let claims = Claims {
            sub: user,
            dev: device,
            rep: replica,
            r#gen: generation,
            iat: now_s,
            exp: now_s + self.access_ttl_s,
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The claims of a token this server signed and that has not expired.
    pub fn check(&self, token: &str) -> Result<Claims, ApiError> {
        let bad = |why: &str| ApiError::unauthorized("invalid_token", why.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("the token is not a JWT"))?;
        // Only our algorithm and our key: `none`, RS256 and others are refused here.
        if header.alg != Algorithm::HS256 {
            return Err(bad("the token's algorithm is not accepted"));
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(bad("the token's key id is unknown"));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized("token_expired", "the access token expired: refresh it")
                }
                _ => bad("the token's signature or claims are not valid"),
            })
    }
}

/// A request whose bearer token checked out, with the user as stored now: role
/// and regions come from the user record on every request, never from the
/// token, so an administrator's change applies to the next request.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub device: DeviceId,
    pub replica: Option<ReplicaId>,
}

impl Authenticated {
    pub fn role(&self) -> Role {
        self.user.role
    }

    /// The regions the user works in (a city covers its counties, a province its cities).
    pub fn regions(&self) -> &[RegionCode] {
        &self.user.regions
    }

    /// Whether one of the user's regions covers `region`.
    pub fn covers(&self, region: RegionCode) -> bool {
        self.user.regions.iter().any(|r| r.covers(region))
    }

    /// 403 `forbidden` unless the user is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.user.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the admin role".into()))
        }
    }
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// The bearer token, the user and the device, in that order; each failure is a
/// 401 before any handler reads the body.
fn authenticate(req: &HttpRequest) -> Result<Authenticated, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("no app state".into()))?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing_token", "an Authorization: Bearer token is required"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(bearer_token)
        .ok_or_else(|| ApiError::unauthorized("missing_token", "the Authorization header is not a Bearer token"))?;
    let claims = state.keys.check(token)?;
    let user = state
        .accounts
        .user(claims.sub)?
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "the token's user does not exist"))?;
    if user.disabled {
        return Err(AccountError::UserDisabled.into());
    }
    let device = state
        .accounts
        .device(claims.dev)?
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "the token's device is not registered"))?;
    if device.revoked {
        return Err(AccountError::DeviceRevoked.into());
    }
    if device.user != user.id || device.generation != claims.r#gen {
        return Err(AccountError::SessionRevoked.into());
    }
    state.seen(device.id, state.clock.now_ms());
    Ok(Authenticated {
        user,
        device: claims.dev,
        replica: claims.rep,
    })
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer   "), None);
        assert_eq!(bearer_token("Basic YWJj"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
