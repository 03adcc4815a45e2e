//! API key stores.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use super::key::{key_id_of, ApiKeyError, GeneratedApiKey, KeyDigest};
use crate::error::BoxError;
use crate::identity::Identity;
use crate::secret::Secret;

/// What a store keeps of one API key: never the key, only its digest.
#[derive(Clone, Debug)]
pub struct ApiKeyRecord<P> {
    /// The public key id the record is filed under.
    pub key_id: String,
    /// SHA-256 of the key.
    pub digest: KeyDigest,
    /// The principal the key authenticates as.
    pub principal: P,
    /// The identity the key authenticates as (its scheme is set to
    /// [`Scheme::ApiKey`](crate::Scheme::ApiKey) on use).
    pub identity: Identity,
    /// When the key stops working, if ever.
    pub expires_at: Option<SystemTime>,
    /// Whether the key was revoked.
    pub revoked: bool,
}

impl<P> ApiKeyRecord<P> {
    /// A record that never expires and is not revoked.
    pub fn new(key_id: String, digest: KeyDigest, principal: P, identity: Identity) -> Self {
        ApiKeyRecord {
            key_id,
            digest,
            principal,
            identity,
            expires_at: None,
            revoked: false,
        }
    }

    /// Sets the expiry to `ttl` from now.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires_at = SystemTime::now().checked_add(ttl);
        self
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// Where API key records live: a database table, a cache, or
/// [`MemoryApiKeyStore`].
///
/// The store only files and finds records by key id; the authenticator
/// compares digests in constant time and checks expiry and revocation, so a
/// store implementation cannot get those wrong.
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The principal of a record.
    type Principal: Clone + Send + Sync + 'static;

    /// Finds the record filed under `key_id`.
    ///
    /// # Errors
    ///
    /// A backend failure; the request is refused with `503`.
    fn find(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord<Self::Principal>>, BoxError>> + Send;
}

impl<S: ApiKeyStore> ApiKeyStore for Arc<S> {
    type Principal = S::Principal;

    fn find(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord<Self::Principal>>, BoxError>> + Send {
        (**self).find(key_id)
    }
}

/// An in-memory [`ApiKeyStore`] that keeps SHA-256 digests only. Cloning
/// shares the same keys.
///
/// ```
/// use tower_auth::api_key::MemoryApiKeyStore;
/// use tower_auth::{Identity, Scheme};
///
/// let store = MemoryApiKeyStore::new();
/// // A key you already hand out (e.g. the seeds' "key_12345") ...
/// store.insert_key("key_12345", "alice", Identity::new("1", Scheme::ApiKey));
/// // ... or a new one, shown once.
/// let key = store
///     .generate("tak", "bob", Identity::new("2", Scheme::ApiKey).with_roles(["admin"]))
///     .unwrap();
/// assert!(key.expose().starts_with("tak_"));
/// assert_eq!(store.len(), 2);
/// ```
pub struct MemoryApiKeyStore<P> {
    records: Arc<RwLock<HashMap<String, ApiKeyRecord<P>>>>,
}

impl<P> Clone for MemoryApiKeyStore<P> {
    fn clone(&self) -> Self {
        MemoryApiKeyStore {
            records: Arc::clone(&self.records),
        }
    }
}

impl<P> Default for MemoryApiKeyStore<P> {
    fn default() -> Self {
        MemoryApiKeyStore {
            records: Arc::default(),
        }
    }
}

impl<P> fmt::Debug for MemoryApiKeyStore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryApiKeyStore")
            .field("len", &self.len())
            .finish()
    }
}

impl<P> MemoryApiKeyStore<P> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ApiKeyRecord<P>>> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ApiKeyRecord<P>>> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Files a record under its key id, replacing any record with that id.
    pub fn insert(&self, record: ApiKeyRecord<P>) {
        self.write().insert(record.key_id.clone(), record);
    }

    /// Files an existing key (any string; only its digest is kept) and
    /// returns its key id. A key in this crate's format whose checksum is
    /// wrong can never authenticate, and is refused with `None`.
    pub fn insert_key(&self, key: &str, principal: P, identity: Identity) -> Option<String> {
        let key_id = key_id_of(key)?;
        let record = ApiKeyRecord::new(key_id.clone(), KeyDigest::of(key), principal, identity);
        self.insert(record);
        Some(key_id)
    }

    /// Generates a key with `prefix`, files its record and returns the key
    /// to show once.
    ///
    /// # Errors
    ///
    /// See [`GeneratedApiKey::generate`].
    pub fn generate(
        &self,
        prefix: &str,
        principal: P,
        identity: Identity,
    ) -> Result<Secret, ApiKeyError> {
        let (key, record) = GeneratedApiKey::generate(prefix)?.into_record(principal, identity);
        self.insert(record);
        Ok(key)
    }

    /// Marks the key revoked; `false` when there is no such key.
    pub fn revoke(&self, key_id: &str) -> bool {
        match self.write().get_mut(key_id) {
            Some(r) => {
                r.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Removes the key; `false` when there is no such key.
    pub fn remove(&self, key_id: &str) -> bool {
        self.write().remove(key_id).is_some()
    }

    /// Removes expired keys and returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let now = SystemTime::now();
        let mut records = self.write();
        let before = records.len();
        records.retain(|_, r| r.expires_at.is_none_or(|at| at > now));
        before - records.len()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    pub(crate) fn debug_records(&self) -> String
    where
        P: fmt::Debug,
    {
        format!("{:?}", self.read().values().collect::<Vec<_>>())
    }

    /// Key ids and principals of the keys (no digests), e.g. for an admin
    /// listing.
    pub fn list(&self) -> Vec<(String, P)>
    where
        P: Clone,
    {
        self.read()
            .values()
            .map(|r| (r.key_id.clone(), r.principal.clone()))
            .collect()
    }
}

impl<P: Clone + Send + Sync + 'static> ApiKeyStore for MemoryApiKeyStore<P> {
    type Principal = P;

    fn find(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord<P>>, BoxError>> + Send {
        std::future::ready(Ok(self.read().get(key_id).cloned()))
    }
}
