//! Pieces shared by the example servers: the SQLite database (users, posts,
//! API keys), password hashing, the JWT secret and the listen address.
//!
//! Password hashing (argon2id, 19 MiB of memory and tens of milliseconds of
//! CPU per hash) runs on the blocking thread pool behind a semaphore sized
//! to the CPU count: requests beyond it wait up to a bound, then fail with
//! [`DbError::Busy`] (the servers answer `503` with `Retry-After`). Memory
//! therefore stays flat however many sign-ups or sign-ins arrive at once.
//!
//! Not an example itself: examples include it with
//! `#[path = "common/mod.rs"] mod common;`.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tower_auth::api_key::{ApiKeyRecord, ApiKeyStore, GeneratedApiKey, KeyDigest};
use tower_auth::{BoxError, Identity, Scheme, Secret};

/// A user as the examples see it. The password hash never leaves the
/// database module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) username: String,
    pub(crate) role: String,
}

impl User {
    /// The identity of this user for `scheme`: subject = user id, one role.
    pub(crate) fn identity(&self, scheme: Scheme) -> Identity {
        Identity::new(self.id.to_string(), scheme).with_roles([self.role.clone()])
    }
}

/// A blog post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Post {
    pub(crate) id: i64,
    pub(crate) author_id: i64,
    pub(crate) title: String,
    pub(crate) body: String,
    pub(crate) published: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("username already taken")]
    Conflict,
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("password hashing failed")]
    Hash,
    #[error("background task failed")]
    Join,
    /// Every password-hashing slot stayed busy for the whole wait: answer
    /// `503` with `Retry-After`.
    #[error("too many password checks in progress")]
    Busy,
}

/// The bounds of a username: 3 to 64 ASCII letters, digits or `. _ @ -`.
pub(crate) const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=64;
/// The bounds of a password, in bytes: at least 8, at most 1 KiB (argon2
/// hashes anything, but a megabyte password is a cheap way to burn CPU and
/// memory).
pub(crate) const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=1024;

/// Checks the sign-up fields against [`USERNAME_LEN`] and
/// [`PASSWORD_LEN`]; `Err` holds the message to show.
pub(crate) fn check_sign_up(username: &str, password: &str) -> Result<(), &'static str> {
    let name_ok = USERNAME_LEN.contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if !name_ok {
        return Err("username: 3 to 64 letters, digits or . _ @ -");
    }
    if !PASSWORD_LEN.contains(&password.len()) {
        return Err("password: 8 to 1024 characters");
    }
    Ok(())
}

/// Checks the sign-in fields: never longer than a sign-up accepts, so that
/// no oversized value reaches the database or the password hash.
pub(crate) fn check_sign_in(username: &str, password: &str) -> Result<(), &'static str> {
    if username.len() > *USERNAME_LEN.end() || password.len() > *PASSWORD_LEN.end() {
        return Err("username of at most 64 bytes, password of at most 1024");
    }
    Ok(())
}

/// How long a request waits for a password-hashing slot by default.
pub(crate) const DEFAULT_HASH_WAIT: Duration = Duration::from_secs(5);

/// The number of argon2id hashes computed at once by default: one per CPU.
pub(crate) fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// The bound on password hashing: `permits` hashes at once, each caller
/// waiting at most `wait` for a permit, each hash working in one of the
/// `buffers` (never more than `permits` of them).
#[derive(Debug)]
struct Hashing {
    permits: Arc<Semaphore>,
    wait: Duration,
    buffers: Mutex<Vec<Vec<Block>>>,
}

impl Hashing {
    fn new(permits: usize, wait: Duration) -> Self {
        Hashing {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            wait,
            buffers: Mutex::new(Vec::new()),
        }
    }
}

/// The SQLite database. Cloning shares the connection; every call runs on
/// the blocking thread pool.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
    /// A user created with this name is an admin (the first user always is).
    admin_username: Option<Arc<str>>,
    hashing: Arc<Hashing>,
}

/// The largest argon2 memory cost a stored hash may ask for (KiB): a
/// corrupt or hostile row must not make a check allocate gigabytes.
const MAX_M_COST: u32 = 64 * 1024;

/// An argon2id PHC string of `password` with a fresh 128-bit salt and the
/// default parameters (19 MiB, 2 passes, 1 lane: OWASP's minimum), computed
/// in `memory`.
///
/// `memory` is a buffer the caller reuses: argon2's own `hash_password`
/// allocates 19 MiB per call, which glibc keeps in per-thread arenas once
/// its mmap threshold has grown, so that the blocking pool's threads would
/// each hold on to one (RSS grew by gigabytes under load even with the
/// concurrency bound).
pub(crate) fn hash_password(password: &[u8], memory: &mut Vec<Block>) -> Result<String, DbError> {
    let params = Params::DEFAULT;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| DbError::Hash)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    memory.resize(params.block_count(), Block::new());
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let hashed = argon2.hash_password_into_with_memory(password, &salt, &mut out, &mut memory[..]);
    memory.fill(Block::new());
    hashed.map_err(|_| DbError::Hash)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.into(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| DbError::Hash)?,
        salt: Some(Salt::new(&salt).map_err(|_| DbError::Hash)?),
        hash: Some(Output::new(&out).map_err(|_| DbError::Hash)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, recomputed in `memory`.
/// The recomputed hash is compared with the stored one in constant time
/// (`subtle`): the time taken says nothing about how many bytes matched.
/// `false` for anything unparsable or outside the bounds (fail closed).
pub(crate) fn verify_password(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = Version::try_from(parsed.version.unwrap_or(0x13)) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    memory.resize(params.block_count(), Block::new());
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        &mut memory[..],
    );
    memory.fill(Block::new());
    hashed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

impl Db {
    /// Opens (and creates on first use) the database at `path`; `:memory:`
    /// for a private in-memory database.
    pub(crate) fn open(
        path: impl AsRef<Path>,
        admin_username: Option<String>,
    ) -> Result<Self, DbError> {
        let conn = if path.as_ref() == Path::new(":memory:") {
            Connection::open_in_memory()?
        } else {
            Connection::open(path)?
        };
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS users (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 username TEXT NOT NULL UNIQUE,
                 password_hash TEXT NOT NULL,
                 role TEXT NOT NULL DEFAULT 'user'
             );
             CREATE TABLE IF NOT EXISTS posts (
                 id INTEGER PRIMARY KEY,
                 author_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                 title TEXT NOT NULL,
                 body TEXT NOT NULL,
                 published INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS api_keys (
                 key_id TEXT PRIMARY KEY,
                 digest TEXT NOT NULL,
                 user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                 name TEXT NOT NULL,
                 expires_at INTEGER,
                 revoked INTEGER NOT NULL DEFAULT 0
             );",
        )?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            admin_username: admin_username.map(Into::into),
            hashing: Arc::new(Hashing::new(default_hash_concurrency(), DEFAULT_HASH_WAIT)),
        })
    }

    /// At most `concurrent` password hashes at once (at least one); a
    /// request waits up to `wait` for its turn, then gets
    /// [`DbError::Busy`].
    pub(crate) fn hash_limit(mut self, concurrent: usize, wait: Duration) -> Self {
        self.hashing = Arc::new(Hashing::new(concurrent, wait));
        self
    }

    /// The semaphore bounding password hashing (tests hold its permits).
    pub(crate) fn hash_permits(&self) -> Arc<Semaphore> {
        Arc::clone(&self.hashing.permits)
    }

    /// Runs the CPU- and memory-heavy `job` (an argon2id hash or check) on
    /// the blocking pool once a hashing permit is free, in a reused argon2
    /// buffer. The permit moves into the blocking task: a client that
    /// disconnects mid-hash does not free its slot before the hash is
    /// actually done. Memory: at most one buffer per permit.
    async fn hash_job<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        let hashing = Arc::clone(&self.hashing);
        let permit =
            tokio::time::timeout(hashing.wait, Arc::clone(&hashing.permits).acquire_owned())
                .await
                .map_err(|_| DbError::Busy)?
                .map_err(|_| DbError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let buffers = || {
                hashing
                    .buffers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            };
            let mut memory = buffers().pop().unwrap_or_default();
            let result = job(&mut memory);
            buffers().push(memory);
            drop(permit);
            result
        })
        .await
        .map_err(|_| DbError::Join)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&conn)
        })
        .await
        .map_err(|_| DbError::Join)?
    }

    /// Creates a user with an argon2id password hash. The first user, or
    /// the configured admin username, gets the `admin` role.
    pub(crate) async fn create_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<User, DbError> {
        let password = Secret::new(password);
        let hash = self
            .hash_job(move |memory| hash_password(password.expose().as_bytes(), memory))
            .await??;
        let username = username.to_owned();
        let admin = self.admin_username.clone();
        self.run(move |c| {
            let count: i64 = c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
            let role = if count == 0 || admin.as_deref() == Some(username.as_str()) {
                "admin"
            } else {
                "user"
            };
            match c.execute(
                "INSERT INTO users (username, password_hash, role) VALUES (?1, ?2, ?3)",
                params![username, hash, role],
            ) {
                Ok(_) => Ok(User {
                    id: c.last_insert_rowid(),
                    username,
                    role: role.to_owned(),
                }),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(DbError::Conflict)
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// The user with `username` if `password` is theirs. Takes the same
    /// time whether or not the user exists.
    pub(crate) async fn check_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, DbError> {
        let username = username.to_owned();
        let row = self
            .run(move |c| {
                Ok(c.query_row(
                    "SELECT id, username, role, password_hash FROM users WHERE username = ?1",
                    params![username],
                    |r| {
                        Ok((
                            User {
                                id: r.get(0)?,
                                username: r.get(1)?,
                                role: r.get(2)?,
                            },
                            r.get::<_, String>(3)?,
                        ))
                    },
                )
                .optional()?)
            })
            .await?;
        let password = Secret::new(password);
        self.hash_job(move |memory| match row {
            Some((user, hash)) => {
                verify_password(password.expose().as_bytes(), &hash, memory).then_some(user)
            }
            // No such user: the same work as a check, so that a wrong
            // username takes as long as a wrong password.
            None => {
                let _ = hash_password(password.expose().as_bytes(), memory);
                None
            }
        })
        .await
    }

    fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
        Ok(User {
            id: r.get(0)?,
            username: r.get(1)?,
            role: r.get(2)?,
        })
    }

    pub(crate) async fn user(&self, id: i64) -> Result<Option<User>, DbError> {
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT id, username, role FROM users WHERE id = ?1",
                params![id],
                Self::user_from_row,
            )
            .optional()?)
        })
        .await
    }

    /// Deletes the user with `id`, their posts and API keys (`ON DELETE
    /// CASCADE`); `false` when there was no such user. Ids are never reused
    /// (`AUTOINCREMENT`), so a token or session naming a deleted user can
    /// never come to name a new one.
    pub(crate) async fn delete_user(&self, id: i64) -> Result<bool, DbError> {
        self.run(move |c| Ok(c.execute("DELETE FROM users WHERE id = ?1", params![id])? > 0))
            .await
    }

    pub(crate) async fn user_by_name(&self, username: &str) -> Result<Option<User>, DbError> {
        let username = username.to_owned();
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT id, username, role FROM users WHERE username = ?1",
                params![username],
                Self::user_from_row,
            )
            .optional()?)
        })
        .await
    }

    pub(crate) async fn users(&self) -> Result<Vec<User>, DbError> {
        self.run(|c| {
            let mut stmt = c.prepare("SELECT id, username, role FROM users ORDER BY id")?;
            let rows = stmt.query_map([], Self::user_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    fn post_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Post> {
        Ok(Post {
            id: r.get(0)?,
            author_id: r.get(1)?,
            title: r.get(2)?,
            body: r.get(3)?,
            published: r.get(4)?,
        })
    }

    pub(crate) async fn create_post(
        &self,
        author_id: i64,
        title: String,
        body: String,
        published: bool,
    ) -> Result<Post, DbError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO posts (author_id, title, body, published) VALUES (?1, ?2, ?3, ?4)",
                params![author_id, title, body, published],
            )?;
            Ok(Post {
                id: c.last_insert_rowid(),
                author_id,
                title,
                body,
                published,
            })
        })
        .await
    }

    pub(crate) async fn post(&self, id: i64) -> Result<Option<Post>, DbError> {
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT id, author_id, title, body, published FROM posts WHERE id = ?1",
                params![id],
                Self::post_from_row,
            )
            .optional()?)
        })
        .await
    }

    pub(crate) async fn posts(&self) -> Result<Vec<Post>, DbError> {
        self.run(|c| {
            let mut stmt =
                c.prepare("SELECT id, author_id, title, body, published FROM posts ORDER BY id")?;
            let rows = stmt.query_map([], Self::post_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub(crate) async fn update_post(
        &self,
        id: i64,
        title: Option<String>,
        body: Option<String>,
        published: Option<bool>,
    ) -> Result<Option<Post>, DbError> {
        self.run(move |c| {
            c.execute(
                "UPDATE posts SET title = COALESCE(?2, title), body = COALESCE(?3, body),
                 published = COALESCE(?4, published) WHERE id = ?1",
                params![id, title, body, published],
            )?;
            Ok(c.query_row(
                "SELECT id, author_id, title, body, published FROM posts WHERE id = ?1",
                params![id],
                Self::post_from_row,
            )
            .optional()?)
        })
        .await
    }

    pub(crate) async fn delete_post(&self, id: i64) -> Result<bool, DbError> {
        self.run(move |c| Ok(c.execute("DELETE FROM posts WHERE id = ?1", params![id])? > 0))
            .await
    }

    /// Generates an API key for `user_id` and stores its digest; returns the
    /// key (shown once) and its id.
    pub(crate) async fn create_api_key(
        &self,
        user_id: i64,
        name: String,
    ) -> Result<(Secret, String), DbError> {
        let generated = GeneratedApiKey::generate("tak").map_err(|_| DbError::Hash)?;
        let key_id = generated.key_id().to_owned();
        let digest = generated.digest().to_hex();
        let id = key_id.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO api_keys (key_id, digest, user_id, name) VALUES (?1, ?2, ?3, ?4)",
                params![id, digest, user_id, name],
            )?;
            Ok(())
        })
        .await?;
        Ok((generated.key().clone(), key_id))
    }
}

/// The database is the API key store: keys are looked up by id, and the
/// authenticator compares the SHA-256 digests in constant time.
impl ApiKeyStore for Db {
    type Principal = User;

    async fn find(&self, key_id: &str) -> Result<Option<ApiKeyRecord<User>>, BoxError> {
        let key_id = key_id.to_owned();
        let row = self
            .run(move |c| {
                Ok(c.query_row(
                    "SELECT k.key_id, k.digest, k.expires_at, k.revoked, u.id, u.username, u.role
                     FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_id = ?1",
                    params![key_id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, bool>(3)?,
                            User {
                                id: r.get(4)?,
                                username: r.get(5)?,
                                role: r.get(6)?,
                            },
                        ))
                    },
                )
                .optional()?)
            })
            .await
            .map_err(|e| Box::new(e) as BoxError)?;
        let Some((key_id, digest, expires_at, revoked, user)) = row else {
            return Ok(None);
        };
        let digest = KeyDigest::from_hex(&digest).ok_or("corrupt API key digest")?;
        let identity = user.identity(Scheme::ApiKey);
        let mut record = ApiKeyRecord::new(key_id, digest, user, identity);
        record.revoked = revoked;
        if let Some(at) = expires_at.and_then(|s| u64::try_from(s).ok()) {
            record = record.expires_at(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at));
        }
        Ok(Some(record))
    }
}

/// The JWT secret: `JWT_SECRET` (at least 32 bytes), or a random one with a
/// warning (tokens then die with the process).
pub(crate) fn jwt_secret() -> Vec<u8> {
    match std::env::var("JWT_SECRET") {
        Ok(s) if s.len() >= 32 => s.into_bytes(),
        Ok(_) => {
            eprintln!(
                "warning: JWT_SECRET is shorter than 32 bytes; using a random secret instead"
            );
            random_secret()
        }
        Err(_) => {
            eprintln!("warning: JWT_SECRET is not set; using a random secret (tokens will not survive a restart)");
            random_secret()
        }
    }
}

fn random_secret() -> Vec<u8> {
    let key = GeneratedApiKey::generate("jwt").expect("the OS random number generator works");
    key.key().expose().as_bytes().to_vec()
}

#[path = "../util/addr.rs"]
mod addr;
pub(crate) use addr::listen_addr;
