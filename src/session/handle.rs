//! [`Session`]: the handle handlers use to read and change their session.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Why a value could not be read from or written to a [`Session`].
///
/// Its `Display` and `Debug` name the key and what went wrong, never the
/// value: session values are often secrets (reset tokens, CSRF tokens, user
/// data), and this error ends up in logs. For the same reason it has no
/// [`source`](std::error::Error::source): serde's messages quote the value
/// (`invalid type: string "...", expected u64`).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("session value under {key:?} {}", kind.describe())]
pub struct SessionError {
    key: String,
    kind: SessionErrorKind,
}

/// What went wrong with a session value; see [`SessionError::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionErrorKind {
    /// The value could not be turned into JSON (e.g. a map with non-string
    /// keys).
    Serialize,
    /// The stored JSON does not deserialize into the requested type.
    Deserialize,
}

impl SessionErrorKind {
    fn describe(self) -> &'static str {
        match self {
            SessionErrorKind::Serialize => "could not be serialized to JSON",
            SessionErrorKind::Deserialize => "does not deserialize into the requested type",
        }
    }
}

impl SessionError {
    fn new(key: &str, kind: SessionErrorKind) -> Self {
        SessionError {
            key: key.to_owned(),
            kind,
        }
    }

    /// The key of the value.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether serializing or deserializing failed.
    pub fn kind(&self) -> SessionErrorKind {
        self.kind
    }
}

impl fmt::Debug for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionError")
            .field("key", &self.key)
            .field("kind", &self.kind)
            .finish()
    }
}

/// `value` as JSON, for the session key `key`.
pub(crate) fn to_value<T: Serialize>(key: &str, value: T) -> Result<Value, SessionError> {
    serde_json::to_value(value).map_err(|_| SessionError::new(key, SessionErrorKind::Serialize))
}

/// The data of a session: string keys to JSON values.
pub type SessionData = HashMap<String, Value>;

#[derive(Default)]
pub(crate) struct State {
    pub(crate) data: SessionData,
    /// The data differs from what was loaded.
    pub(crate) changed: bool,
    /// [`Session::cycle_id`]: the data moves to a new id, provided the
    /// loaded record still exists when the request ends.
    pub(crate) cycle: bool,
    /// [`Session::destroy`]: the loaded record is deleted whatever happens;
    /// data stored afterwards is a new session (new id, new lifetime).
    pub(crate) destroyed: bool,
    /// [`Session::destroy`] or [`Session::clear`]: if the session ends up
    /// empty, the client's cookie is removed.
    pub(crate) ended: bool,
    /// [`Session::clear`] was called: the handler's changes start from no
    /// data.
    pub(crate) cleared: bool,
    /// The keys the handler wrote or removed: its changes, applied again on
    /// top of the stored record if another request changed it meanwhile.
    pub(crate) dirty: BTreeSet<String>,
}

/// The session of a request, put into its extensions by
/// [`SessionLayer`](super::SessionLayer). See the [module docs](super).
///
/// Values are typed with serde and kept as JSON. Reads and writes are
/// synchronous: the session was loaded before the handler ran and is saved
/// after it answered, so no lock is held across an `.await`. Cloning is a
/// reference-count increment and every clone sees the same data, so a
/// handler may hand one to a spawned task; changes made after the response
/// left the handler are not saved.
///
/// ```
/// use tower_auth::session::Session;
///
/// let session = Session::default();
/// session.insert("cart", vec!["apple", "pear"]).unwrap();
/// let cart: Option<Vec<String>> = session.get("cart").unwrap();
/// assert_eq!(cart.unwrap(), ["apple", "pear"]);
///
/// session.cycle_id(); // privilege change: the id changes, the data stays
/// session.destroy();  // on logout: the data goes, the cookie is removed
/// assert!(session.is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Session(Arc<Mutex<State>>);

impl Session {
    pub(crate) fn with_data(data: SessionData) -> Self {
        Session(Arc::new(Mutex::new(State {
            data,
            ..State::default()
        })))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value under `key`, deserialized; `None` when absent.
    ///
    /// # Errors
    ///
    /// The value does not deserialize into `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let value = match self.lock().data.get(key) {
            Some(v) => v.clone(),
            None => return Ok(None),
        };
        T::deserialize(value)
            .map(Some)
            .map_err(|_| SessionError::new(key, SessionErrorKind::Deserialize))
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.lock().data.get(key).cloned()
    }

    /// Stores `value` under `key`, replacing any previous value. Storing the
    /// value already there is not a change (no write, no `Set-Cookie`).
    ///
    /// # Errors
    ///
    /// The value does not serialize to JSON (e.g. a map with non-string
    /// keys).
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let value = to_value(key, value)?;
        self.insert_value(key, value);
        Ok(())
    }

    /// Stores a raw JSON value under `key`.
    pub fn insert_value(&self, key: &str, value: Value) {
        let mut state = self.lock();
        if state.data.get(key) != Some(&value) {
            state.data.insert(key.to_owned(), value);
            state.changed = true;
            state.dirty.insert(key.to_owned());
        }
    }

    /// Removes the value under `key` and returns it, deserialized.
    ///
    /// # Errors
    ///
    /// The value does not deserialize into `T`; it is removed all the same.
    pub fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        match self.remove_value(key) {
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|_| SessionError::new(key, SessionErrorKind::Deserialize)),
            None => Ok(None),
        }
    }

    /// Removes the value under `key` and returns it.
    pub fn remove_value(&self, key: &str) -> Option<Value> {
        let mut state = self.lock();
        let removed = state.data.remove(key);
        if removed.is_some() {
            state.changed = true;
            state.dirty.insert(key.to_owned());
        }
        removed
    }

    /// Whether there is a value under `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.lock().data.contains_key(key)
    }

    /// Whether the session holds no data. An empty session is not stored and
    /// sets no cookie.
    pub fn is_empty(&self) -> bool {
        self.lock().data.is_empty()
    }

    /// Removes every value, keeping the id. If nothing is stored again in
    /// this request, the record is deleted and the cookie removed
    /// (`Max-Age=0`), as with [`destroy`](Session::destroy); values stored
    /// afterwards in the same request stay under the current id.
    pub fn clear(&self) {
        let mut state = self.lock();
        if !state.data.is_empty() {
            state.data.clear();
            state.changed = true;
        }
        state.ended = true;
        state.cleared = true;
    }

    /// Gives the session a new id and **keeps all its data** and its
    /// creation time (so the absolute timeout still counts from when the
    /// session started): call it when the same user gains privileges (sudo
    /// mode, a second factor) or to renew the id periodically.
    ///
    /// Do not use it alone at login: the data of whoever used the session
    /// before (an anonymous visitor, or another user whose cookie ended up
    /// in this browser) would carry over to the new user. Log in with
    /// [`SessionAuthenticator::login`](super::SessionAuthenticator::login),
    /// or call [`destroy`](Session::destroy) then store the user.
    ///
    /// When the request ends, the old record is deleted and the data is
    /// saved under the new id, with a new cookie, only if the old record
    /// still exists: a session destroyed meanwhile by another request
    /// (logout in another tab, revocation) stays destroyed, and the response
    /// then sets no cookie.
    pub fn cycle_id(&self) {
        let mut state = self.lock();
        state.cycle = true;
        state.changed = true;
    }

    /// Ends the session: removes its data, deletes its record from the store
    /// and sends a removal cookie (`Max-Age=0`). Values inserted after
    /// `destroy` in the same request start a new session with a new id and a
    /// new absolute lifetime; that is how to log a user in with a clean
    /// session.
    pub fn destroy(&self) {
        let mut state = self.lock();
        state.data.clear();
        state.destroyed = true;
        state.ended = true;
        state.changed = true;
    }

    /// A copy of the data.
    pub fn data(&self) -> SessionData {
        self.lock().data.clone()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        let mut keys: Vec<&str> = state.data.keys().map(String::as_str).collect();
        keys.sort_unstable();
        f.debug_struct("Session")
            .field("keys", &keys)
            .field("changed", &state.changed)
            .field("cycled", &state.cycle)
            .field("destroyed", &state.destroyed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct User {
        id: u32,
    }

    #[test]
    fn typed_round_trip() {
        let s = Session::default();
        s.insert("user", User { id: 7 }).unwrap();
        assert_eq!(s.get::<User>("user").unwrap(), Some(User { id: 7 }));
        assert_eq!(s.get::<User>("nobody").unwrap(), None);
        assert!(s.lock().changed);
    }

    #[test]
    fn wrong_type_is_an_error_naming_the_key() {
        let s = Session::default();
        s.insert("n", 3).unwrap();
        let err = s.get::<User>("n").unwrap_err();
        assert_eq!(err.key(), "n");
        let err = s.remove::<User>("n").unwrap_err();
        assert_eq!(err.key(), "n");
        assert!(!s.contains_key("n"));
    }

    #[test]
    fn unserializable_value_is_an_error() {
        let s = Session::default();
        let mut map = std::collections::BTreeMap::new();
        map.insert((1, 2), 3);
        assert!(s.insert("m", map).is_err());
        assert!(!s.lock().changed);
    }

    #[test]
    fn rewriting_the_same_value_is_no_change() {
        let s = Session::with_data(SessionData::from([("a".into(), Value::from(1))]));
        s.insert("a", 1).unwrap();
        assert!(!s.lock().changed);
        assert_eq!(s.remove_value("missing"), None);
        assert!(!s.lock().changed);
        s.insert("a", 2).unwrap();
        assert!(s.lock().changed);
    }

    #[test]
    fn clones_share_state() {
        let s = Session::default();
        let t = s.clone();
        t.insert("k", "v").unwrap();
        assert_eq!(s.get::<String>("k").unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn destroy_clears_and_rotates() {
        let s = Session::with_data(SessionData::from([("a".into(), Value::from(1))]));
        s.destroy();
        let state = s.lock();
        assert!(state.data.is_empty() && state.destroyed && state.ended && state.changed);
    }

    #[test]
    fn debug_lists_keys_not_values() {
        let s = Session::default();
        s.insert("token", "hunter2").unwrap();
        let text = format!("{s:?}");
        assert!(text.contains("token"));
        assert!(!text.contains("hunter2"));
    }
}
