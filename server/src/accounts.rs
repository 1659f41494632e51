//! Users, their devices and refresh tokens, in the `accounts` tree.
//!
//! Passwords are hashed with argon2; refresh tokens are random and stored only as
//! their SHA-256, so a copy of the store does not hand out sessions.
//!
//! Refresh tokens rotate: each use spends the token and starts a new session. A
//! spent token is kept (until it expires) with the time it was spent and its
//! successor, so that presenting it again can be told apart:
//! - within the grace window, while its successor is unused, the reply carrying
//!   the successor was lost: the successor is dropped and a new pair is minted;
//! - otherwise someone holds a copy of an old token: the device's session
//!   generation is bumped, which ends every refresh token and access token the
//!   device holds (theft detection). A password login on it starts over.

use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use mobile_schema::ids::{DeviceId, UserId};
use mobile_schema::region::RegionCode;
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
/// `p` + replica id → the device that first bound it. Never removed: a replica
/// id belongs to one device for good, or one user could push under another's
/// (it moves only with a revoked tablet that enrols again for the same user).
const REPLICA: u8 = b'p';
const JWT_SECRET: &[u8] = b"kjwt_secret";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("wrong username or password")]
    BadCredentials,
    #[error("{0}")]
    InvalidToken(String),
    #[error("the device was revoked")]
    DeviceRevoked,
    /// The device's sessions were ended (a spent refresh token came back, or the
    /// device changed hands): log in again on it.
    #[error("this device's sessions were revoked: log in again")]
    SessionRevoked,
    /// A spent refresh token was presented after its grace window: the device's
    /// sessions are now revoked.
    #[error("this refresh token was already used: the device's sessions are revoked, log in again")]
    TokenReused,
    #[error("the user is disabled")]
    UserDisabled,
    /// The replica id is bound to another device; `field` names it in the request.
    #[error("{field}: this replica id belongs to another device")]
    ReplicaTaken { field: &'static str },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the user {0} exists")]
    UserExists(String),
    #[error("no {what} {id}")]
    NotFound { what: &'static str, id: String },
    #[error("this change would leave no enabled admin")]
    LastAdmin,
    #[error("the accounts lock is poisoned")]
    Poisoned,
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
    /// The GB/T 2260 regions the user works in (a city covers its counties, a
    /// province its cities).
    #[serde(default)]
    pub regions: Vec<RegionCode>,
    #[serde(default)]
    pub disabled: bool,
}

/// What an administrator may change on a user; `None` leaves it as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub regions: Option<Vec<RegionCode>>,
    pub disabled: Option<bool>,
    /// An argon2 hash (hash the new password with [`hash_password`] off the async threads).
    pub password_hash: Option<String>,
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
    /// Revoked by an administrator: no token of this device id is accepted again
    /// (the tablet enrols under a new id).
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub revoked_ms: Option<u64>,
    /// Bumped to end every session of the device at once; access tokens carry the
    /// generation they were issued in.
    #[serde(default)]
    pub generation: u64,
    /// Last login or refresh (the server adds requests it has seen since it started).
    #[serde(default)]
    pub last_seen_ms: Option<u64>,
}

/// What a refresh token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: UserId,
    pub device: DeviceId,
    pub replica: Option<ReplicaId>,
    pub expires_ms: u64,
    /// The device's generation when the session started.
    #[serde(default)]
    pub generation: u64,
    /// When the token was first spent; kept to recognise it if it comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent_ms: Option<u64>,
    /// The key of the session that replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
}

/// A refresh that went through: the session to issue an access token for, and
/// its refresh token.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub session: Session,
    pub user: User,
    pub refresh_token: String,
    /// The presented token had been spent within the grace window (a retry after
    /// a lost reply).
    pub retried: bool,
}

/// The accounts tree.
#[derive(Debug, Clone)]
pub struct Accounts {
    db: sled::Db,
    tree: sled::Tree,
    /// Serialises read-modify-write of users, devices and sessions (rare, small).
    lock: Arc<Mutex<()>>,
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

/// The checks a new user's or a changed password must pass.
pub fn check_password_rules(password: &str) -> Result<(), AccountError> {
    if password.len() < 8 || password.len() > 1024 {
        return Err(AccountError::Invalid {
            field: "password".into(),
            message: "a password has 8 to 1024 bytes".into(),
        });
    }
    Ok(())
}

/// The checks a username must pass; returns it trimmed.
pub fn check_username(username: &str) -> Result<&str, AccountError> {
    let username = username.trim();
    if username.is_empty() || username.len() > 64 || username.chars().any(char::is_control) {
        return Err(AccountError::Invalid {
            field: "username".into(),
            message: "a username has 1 to 64 bytes and no control characters".into(),
        });
    }
    Ok(username)
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
        let accounts = Self {
            db: db.clone(),
            tree: db.open_tree(crate::storage::keys::ACCOUNTS)?,
            lock: Arc::default(),
        };
        accounts.index_replicas()?;
        Ok(accounts)
    }

    /// Binds the replicas of devices stored before the replica index (or
    /// restored from a backup of then) to their devices. Oldest device first:
    /// where two name the same replica, the first to enrol keeps it.
    fn index_replicas(&self) -> Result<(), AccountError> {
        let _guard = self.guard()?;
        let mut added = 0;
        let mut devices = self.devices()?;
        // Stored by id; the first to enrol is the one registered first.
        devices.sort_by_key(|d| (d.registered_ms, d.id.as_uuid()));
        for device in devices {
            if let Some(replica) = device.replica {
                let k = key(REPLICA, replica.0.as_bytes());
                let fresh = self.tree.compare_and_swap(
                    k,
                    None as Option<&[u8]>,
                    Some(device.id.as_uuid().as_bytes().as_slice()),
                )?;
                added += usize::from(fresh.is_ok());
            }
        }
        if added > 0 {
            self.flush()?;
            tracing::info!(added, "replica ids of stored devices indexed");
        }
        Ok(())
    }

    /// Whether `replica` may be bound to `device` of `user`: it is unbound or
    /// already this device's. Call under the accounts lock, then [`Self::bind_replica`].
    fn check_replica(
        &self,
        device: DeviceId,
        user: UserId,
        replica: Option<ReplicaId>,
        field: &'static str,
    ) -> Result<(), AccountError> {
        let Some(replica) = replica else { return Ok(()) };
        // The server's own replicas (office, schedule, sites) are never a
        // device's: their ids show in pulled version ids.
        let server = self.db.open_tree(crate::server_replica::TREE)?;
        for k in crate::server_replica::ALL {
            if server
                .get(k)?
                .is_some_and(|id| id.as_ref() == replica.0.as_bytes().as_slice())
            {
                return Err(AccountError::ReplicaTaken { field });
            }
        }
        let Some(owner) = self.tree.get(key(REPLICA, replica.0.as_bytes()))? else {
            return Ok(());
        };
        if owner.as_ref() == device.as_uuid().as_bytes().as_slice() {
            return Ok(());
        }
        // A revoked tablet enrols again under a new device id and keeps its
        // store: its replica moves to the new device, for the same user only.
        let owner = uuid::Uuid::from_slice(&owner)
            .ok()
            .map(DeviceId::from)
            .map(|id| self.device(id))
            .transpose()?
            .flatten();
        match owner {
            Some(d) if d.revoked && d.user == user => Ok(()),
            _ => Err(AccountError::ReplicaTaken { field }),
        }
    }

    /// Records that `replica` belongs to `device` (checked by [`Self::check_replica`]).
    /// Never removed: a replica id another device held stays out of reach.
    fn bind_replica(&self, device: DeviceId, replica: Option<ReplicaId>) -> Result<(), AccountError> {
        if let Some(replica) = replica {
            self.tree.insert(
                key(REPLICA, replica.0.as_bytes()),
                device.as_uuid().as_bytes().as_slice(),
            )?;
        }
        Ok(())
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>, AccountError> {
        self.lock.lock().map_err(|_| AccountError::Poisoned)
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
        regions: Vec<RegionCode>,
    ) -> Result<User, AccountError> {
        check_username(username)?;
        check_password_rules(password)?;
        let hash = hash_password(password)?;
        self.insert_user(username, hash, role, regions)
    }

    /// Stores a new user whose password is already hashed.
    pub fn insert_user(
        &self,
        username: &str,
        password_hash: String,
        role: Role,
        regions: Vec<RegionCode>,
    ) -> Result<User, AccountError> {
        let username = check_username(username)?;
        let _guard = self.guard()?;
        if self.tree.contains_key(key(USER, username.as_bytes()))? {
            return Err(AccountError::UserExists(username.into()));
        }
        let user = User {
            id: UserId::generate(),
            username: username.into(),
            password_hash,
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

    /// Every user, by username.
    pub fn users(&self) -> Result<Vec<User>, AccountError> {
        self.tree
            .scan_prefix([USER])
            .map(|kv| Ok(serde_json::from_slice(&kv?.1)?))
            .collect()
    }

    /// Applies an administrator's change; refuses one that leaves no enabled admin.
    pub fn update_user(&self, username: &str, patch: UserPatch) -> Result<User, AccountError> {
        let _guard = self.guard()?;
        let k = key(USER, username.as_bytes());
        let mut user: User = self.get(&k)?.ok_or_else(|| AccountError::NotFound {
            what: "user",
            id: username.to_string(),
        })?;
        let was_admin = user.role == Role::Admin && !user.disabled;
        if let Some(role) = patch.role {
            user.role = role;
        }
        if let Some(regions) = patch.regions {
            user.regions = regions;
        }
        if let Some(disabled) = patch.disabled {
            user.disabled = disabled;
        }
        if let Some(hash) = patch.password_hash {
            user.password_hash = hash;
        }
        let is_admin = user.role == Role::Admin && !user.disabled;
        if was_admin && !is_admin {
            let others = self
                .users()?
                .into_iter()
                .any(|u| u.id != user.id && u.role == Role::Admin && !u.disabled);
            if !others {
                return Err(AccountError::LastAdmin);
            }
        }
        self.put(&k, &user)?;
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

    /// Every device, in id order (ids are time-ordered: oldest first).
    pub fn devices(&self) -> Result<Vec<Device>, AccountError> {
        self.tree
            .scan_prefix([DEVICE])
            .map(|kv| Ok(serde_json::from_slice(&kv?.1)?))
            .collect()
    }

    fn put_device(&self, device: &Device) -> Result<(), AccountError> {
        self.put(&key(DEVICE, device.id.as_uuid().as_bytes()), device)
    }

    /// Registers a device to `user` at a password login, or logs it in again.
    /// A revoked device id stays revoked. A device that changes hands ends the
    /// previous user's sessions on it.
    pub fn enrol_device(
        &self,
        user: &User,
        registration: &sync_protocol::wire::DeviceRegistration,
        now_ms: u64,
    ) -> Result<Device, AccountError> {
        let _guard = self.guard()?;
        let old = self.device(registration.id)?;
        if old.as_ref().is_some_and(|o| o.revoked) {
            return Err(AccountError::DeviceRevoked);
        }
        self.check_replica(registration.id, user.id, registration.replica, "device.replica")?;
        let device = match old {
            Some(old) => Device {
                user: user.id,
                name: registration.name.clone().or(old.name),
                app_version: registration.app_version.clone().or(old.app_version),
                replica: registration.replica,
                generation: if old.user == user.id {
                    old.generation
                } else {
                    old.generation + 1
                },
                last_seen_ms: Some(now_ms),
                ..old
            },
            None => Device {
                id: registration.id,
                user: user.id,
                name: registration.name.clone(),
                app_version: registration.app_version.clone(),
                replica: registration.replica,
                registered_ms: now_ms,
                revoked: false,
                revoked_ms: None,
                generation: 0,
                last_seen_ms: Some(now_ms),
            },
        };
        self.bind_replica(device.id, device.replica)?;
        self.put_device(&device)?;
        Ok(device)
    }

    /// Revokes a device for good: its tokens stop working at their next use.
    pub fn revoke_device(&self, id: DeviceId, now_ms: u64) -> Result<Device, AccountError> {
        let _guard = self.guard()?;
        let mut device = self.device(id)?.ok_or_else(|| AccountError::NotFound {
            what: "device",
            id: id.to_string(),
        })?;
        if !device.revoked {
            device.revoked = true;
            device.revoked_ms = Some(now_ms);
            device.generation += 1;
            self.put_device(&device)?;
            self.flush()?;
        }
        Ok(device)
    }

    /// Stores a new session and returns its refresh token.
    pub fn start_session(&self, session: &Session) -> Result<String, AccountError> {
        let token = random_token();
        self.put(&token_hash(&token), session)?;
        self.flush()?;
        Ok(token)
    }

    /// Spends a refresh token for a new session (see the module's notes on
    /// rotation, the grace window and reuse). `replica` rebinds the session.
    pub fn rotate(
        &self,
        token: &str,
        replica: Option<ReplicaId>,
        now_ms: u64,
        grace_ms: u64,
        ttl_ms: u64,
    ) -> Result<Rotated, AccountError> {
        let _guard = self.guard()?;
        let k = token_hash(token);
        let Some(mut old) = self.get::<Session>(&k)? else {
            return Err(AccountError::InvalidToken("unknown refresh token: log in again".into()));
        };
        if old.expires_ms <= now_ms {
            return Err(AccountError::InvalidToken(
                "the refresh token expired: log in again".into(),
            ));
        }
        let mut device = self
            .device(old.device)?
            .ok_or_else(|| AccountError::InvalidToken("the session's device is not registered".into()))?;
        if device.revoked {
            return Err(AccountError::DeviceRevoked);
        }
        if old.generation != device.generation || device.user != old.user {
            return Err(AccountError::SessionRevoked);
        }
        let user = self
            .user(old.user)?
            .ok_or_else(|| AccountError::InvalidToken("the session's user does not exist".into()))?;
        if user.disabled {
            return Err(AccountError::UserDisabled);
        }
        // A spent token presented again ends the device's sessions first,
        // whatever else is wrong with the request: a thief must not slip past
        // the reuse check by naming another device's replica.
        let retried: Option<Option<Vec<u8>>> = match (old.spent_ms, &old.successor) {
            (None, _) => None,
            (Some(spent), successor) if now_ms <= spent.saturating_add(grace_ms) => {
                // Honoured only while the pair it was spent for is unused: the
                // client never saw that pair, so it is dropped.
                let successor_key = successor.as_deref().and_then(|h| hex::decode(h).ok());
                let unused = match &successor_key {
                    Some(sk) => self
                        .get::<Session>(&key(REFRESH, sk))?
                        .is_none_or(|s| s.spent_ms.is_none()),
                    None => true,
                };
                if !unused {
                    return Err(self.end_sessions(&mut device)?);
                }
                Some(successor_key)
            }
            (Some(_), _) => return Err(self.end_sessions(&mut device)?),
        };
        // Before anything is spent: a refused rebind changes nothing. The
        // session's own replica is checked too, for sessions bound before the index.
        let replica = replica.or(old.replica);
        self.check_replica(device.id, user.id, replica, "replica")?;
        if let Some(Some(sk)) = &retried {
            self.tree.remove(key(REFRESH, sk))?;
        }
        let retried = retried.is_some();
        let session = Session {
            user: user.id,
            device: device.id,
            replica,
            expires_ms: now_ms.saturating_add(ttl_ms),
            generation: device.generation,
            spent_ms: None,
            successor: None,
        };
        let refresh_token = random_token();
        let new_key = token_hash(&refresh_token);
        self.put(&new_key, &session)?;
        old.spent_ms = Some(old.spent_ms.unwrap_or(now_ms));
        old.successor = Some(hex::encode(&new_key[1..]));
        self.put(&k, &old)?;
        self.bind_replica(device.id, session.replica)?;
        device.replica = session.replica;
        device.last_seen_ms = Some(now_ms);
        self.put_device(&device)?;
        self.flush()?;
        Ok(Rotated {
            session,
            user,
            refresh_token,
            retried,
        })
    }

    /// Theft detection: every session and access token of the device ends.
    fn end_sessions(&self, device: &mut Device) -> Result<AccountError, AccountError> {
        device.generation += 1;
        self.put_device(device)?;
        self.flush()?;
        tracing::warn!(device = %device.id, "a spent refresh token was presented again: the device's sessions are revoked");
        Ok(AccountError::TokenReused)
    }

    /// Forgets sessions past their expiry; returns how many.
    pub fn prune_sessions(&self, now_ms: u64) -> Result<usize, AccountError> {
        let mut pruned = 0;
        for kv in self.tree.scan_prefix([REFRESH]) {
            let (k, v) = kv?;
            let expired = serde_json::from_slice::<Session>(&v).map_or(true, |s| s.expires_ms <= now_ms);
            if expired {
                self.tree.remove(k)?;
                pruned += 1;
            }
        }
        if pruned > 0 {
            self.flush()?;
        }
        Ok(pruned)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn no_device_may_bind_a_replica_id_of_the_servers_own() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let office = crate::server_replica::ServerReplica::open(&db, crate::server_replica::OFFICE).unwrap();
        let accounts = Accounts::open(&db).unwrap();
        let user = accounts
            .insert_user("wei", "not-a-hash".into(), Role::Inspector, Vec::new())
            .unwrap();
        let registration = |replica| sync_protocol::wire::DeviceRegistration {
            id: DeviceId::generate(),
            replica: Some(replica),
            name: None,
            app_version: None,
        };
        let taken = accounts.enrol_device(&user, &registration(office.id()), 1_000);
        assert!(
            matches!(
                taken,
                Err(AccountError::ReplicaTaken {
                    field: "device.replica"
                })
            ),
            "{taken:?}"
        );
        // A replica of its own is bound as before.
        assert!(
            accounts
                .enrol_device(&user, &registration(ReplicaId::generate()), 1_000)
                .is_ok()
        );
    }

    fn device(n: u128, user: UserId, replica: ReplicaId, registered_ms: u64) -> Device {
        Device {
            id: DeviceId(uuid::Uuid::from_u128(n)),
            user,
            name: None,
            app_version: None,
            replica: Some(replica),
            registered_ms,
            revoked: false,
            revoked_ms: None,
            generation: 0,
            last_seen_ms: None,
        }
    }

    #[test]
    fn stored_devices_naming_one_replica_leave_it_to_the_first_enrolled_not_the_lowest_id() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let accounts = Accounts::open(&db).unwrap();
        let user = accounts
            .insert_user("wei", "not-a-hash".into(), Role::Inspector, Vec::new())
            .unwrap();
        let replica = ReplicaId::generate();
        // As a store from before the index holds them: no replica keys.
        let first = device(9, user.id, replica, 1_000);
        let later = device(1, user.id, replica, 2_000);
        accounts.put_device(&later).unwrap();
        accounts.put_device(&first).unwrap();
        drop(accounts);
        let accounts = Accounts::open(&db).unwrap();
        assert!(accounts.check_replica(first.id, user.id, Some(replica), "r").is_ok());
        assert!(matches!(
            accounts.check_replica(later.id, user.id, Some(replica), "r"),
            Err(AccountError::ReplicaTaken { .. })
        ));
    }

    #[test]
    fn a_spent_refresh_token_naming_another_devices_replica_is_caught_as_reuse() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let accounts = Accounts::open(&db).unwrap();
        let user = accounts
            .insert_user("wei", "not-a-hash".into(), Role::Inspector, Vec::new())
            .unwrap();
        let registration = |replica| sync_protocol::wire::DeviceRegistration {
            id: DeviceId::generate(),
            replica: Some(replica),
            name: None,
            app_version: None,
        };
        let mine = accounts
            .enrol_device(&user, &registration(ReplicaId::generate()), 1_000)
            .unwrap();
        let other = ReplicaId::generate();
        accounts.enrol_device(&user, &registration(other), 1_000).unwrap();
        let token = accounts
            .start_session(&Session {
                user: user.id,
                device: mine.id,
                replica: mine.replica,
                expires_ms: 1_000_000,
                generation: mine.generation,
                spent_ms: None,
                successor: None,
            })
            .unwrap();
        accounts.rotate(&token, None, 2_000, 10, 100_000).unwrap();
        // A thief replays it later, naming the other tablet's replica.
        let replayed = accounts.rotate(&token, Some(other), 50_000, 10, 100_000);
        assert!(matches!(replayed, Err(AccountError::TokenReused)), "{replayed:?}");
        assert_eq!(
            accounts.device(mine.id).unwrap().unwrap().generation,
            mine.generation + 1,
            "the device's sessions end"
        );
    }
}
