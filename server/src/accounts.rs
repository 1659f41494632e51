//! Users, their devices and refresh tokens, in the `accounts` tree.
//!
//! Passwords are hashed with argon2; refresh tokens are random and stored only as
//! their SHA-256, so a copy of the store does not hand out sessions.

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use mobile_schema::ids::{DeviceId, UserId};
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sync_protocol::ReplicaId;

/// `u` + username → user.
const USER: u8 = b'u';
/// `i` + user id → username.
const USER_ID: u8 = b'i';
/// `d` + device id → device.
const DEVICE: u8 = b'd';
/// `t` + SHA-256 of a refresh token → its session.
const REFRESH: u8 = b't';
const JWT_SECRET: &[u8] = b"kjwt_secret";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("{0}")]
    InvalidToken(String),
    #[error("the device was revoked")]
    DeviceRevoked,
    #[error("the user is disabled")]
    UserDisabled,
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the user {0} exists")]
    UserExists(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the accounts store failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("the accounts store is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    /// GB/T 2260 codes of the regions the user works in.
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub user: UserId,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub app_version: Option<String>,
    /// The replica the device's tokens speak for.
    #[serde(default)]
    pub replica: Option<ReplicaId>,
    pub registered_ms: u64,
    #[serde(default)]
    pub revoked: bool,
}

/// What a refresh token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: UserId,
    pub device: DeviceId,
    pub replica: Option<ReplicaId>,
    pub expires_ms: u64,
}

/// The accounts tree.
#[derive(Debug, Clone)]
pub struct Accounts {
    db: sled::Db,
    tree: sled::Tree,
}

fn key(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

/// 32 random bytes as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn token_hash(token: &str) -> Vec<u8> {
    key(REFRESH, &Sha256::digest(token.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

impl Accounts {
    pub fn open(db: &sled::Db) -> Result<Self, AccountError> {
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree(crate::storage::keys::ACCOUNTS)?,
        })
    }

    fn put<T: Serialize>(&self, k: &[u8], v: &T) -> Result<(), AccountError> {
        self.tree.insert(k, serde_json::to_vec(v)?)?;
        Ok(())
    }

    fn get<T: serde::de::DeserializeOwned>(&self, k: &[u8]) -> Result<Option<T>, AccountError> {
        match self.tree.get(k)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    fn flush(&self) -> Result<(), AccountError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn is_empty(&self) -> Result<bool, AccountError> {
        Ok(self.tree.scan_prefix([USER]).next().is_none())
    }

    pub fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        regions: Vec<String>,
    ) -> Result<User, AccountError> {
        let username = username.trim();
        if username.is_empty() || username.len() > 64 {
            return Err(AccountError::Invalid {
                field: "username".into(),
                message: "a username has 1 to 64 bytes".into(),
            });
        }
        if password.len() < 8 || password.len() > 1024 {
            return Err(AccountError::Invalid {
                field: "password".into(),
                message: "a password has 8 to 1024 bytes".into(),
            });
        }
        if self.tree.contains_key(key(USER, username.as_bytes()))? {
            return Err(AccountError::UserExists(username.into()));
        }
        let user = User {
            id: UserId::generate(),
            username: username.into(),
            password_hash: hash_password(password)?,
            role,
            regions,
            disabled: false,
        };
        self.put(&key(USER, username.as_bytes()), &user)?;
        self.tree
            .insert(key(USER_ID, user.id.as_uuid().as_bytes()), username.as_bytes())?;
        self.flush()?;
        Ok(user)
    }

    pub fn user_by_name(&self, username: &str) -> Result<Option<User>, AccountError> {
        self.get(&key(USER, username.as_bytes()))
    }

    pub fn user(&self, id: UserId) -> Result<Option<User>, AccountError> {
        match self.tree.get(key(USER_ID, id.as_uuid().as_bytes()))? {
            Some(name) => self.get(&key(USER, &name)),
            None => Ok(None),
        }
    }

    /// The user, if the password is theirs. Slow on purpose (argon2).
    pub fn check_password(&self, username: &str, password: &str) -> Result<User, AccountError> {
        let user = self.user_by_name(username)?;
        // Hash even for an unknown user so the answer time does not tell which names exist.
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.into());
        let ok = verify_password(password, &hash);
        match user {
            Some(u) if ok => {
                if u.disabled {
                    Err(AccountError::UserDisabled)
                } else {
                    Ok(u)
                }
            }
            _ => Err(AccountError::BadCredentials),
        }
    }

    pub fn device(&self, id: DeviceId) -> Result<Option<Device>, AccountError> {
        self.get(&key(DEVICE, id.as_uuid().as_bytes()))
    }

    /// Registers a device to a user (or re-registers it after a login on it).
    pub fn register_device(&self, device: Device) -> Result<Device, AccountError> {
        if let Some(old) = self.device(device.id)?
            && old.revoked
        {
            return Err(AccountError::DeviceRevoked);
        }
        self.put(&key(DEVICE, device.id.as_uuid().as_bytes()), &device)?;
        Ok(device)
    }

    /// Stores a new session and returns its refresh token.
    pub fn start_session(&self, session: &Session) -> Result<String, AccountError> {
        let token = random_token();
        self.put(&token_hash(&token), session)?;
        self.flush()?;
        Ok(token)
    }

    /// Spends a refresh token: its session, which the caller replaces with a new one.
    pub fn take_session(&self, token: &str, now_ms: u64) -> Result<Session, AccountError> {
        let k = token_hash(token);
        let Some(raw) = self.tree.remove(&k)? else {
            return Err(AccountError::InvalidToken("unknown or spent refresh token".into()));
        };
        let session: Session = serde_json::from_slice(&raw)?;
        if session.expires_ms <= now_ms {
            return Err(AccountError::InvalidToken(
                "the refresh token expired: log in again".into(),
            ));
        }
        Ok(session)
    }

    /// The HS256 secret, made on first use and kept in the store.
    pub fn jwt_secret(&self) -> Result<Vec<u8>, AccountError> {
        if let Some(s) = self.tree.get(JWT_SECRET)? {
            return Ok(s.to_vec());
        }
        let mut bytes = vec![0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        self.tree.insert(JWT_SECRET, bytes.clone())?;
        self.flush()?;
        Ok(bytes)
    }
}

/// An argon2 hash of a random password nobody knows, for unknown usernames.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$y0LzwWbW2mqFh3pJxX1KkV0p6Jg2m1QyK8VvH7zEhXw";
