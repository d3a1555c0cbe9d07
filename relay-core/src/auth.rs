//! User/password checking shared by every server-side handshake (relay, SOCKS5, HTTP).
//!
//! [`Credentials`] is the configured user table, with GOST's rules: a user configured with an
//! empty password accepts any password, and an empty table means "no authentication" (GOST
//! without an authenticator). Comparisons run in constant time with respect to the secret
//! contents, and every configured user is compared on every check.
//!
//! Handshake machines take an [`Authenticator`], so a caller can plug in its own check.
//!
//! ```
//! use relay_core::auth::{Authenticator, Credentials};
//! let mut creds = Credentials::new();
//! creds.insert("alice", "s3cret");
//! creds.insert("bob", ""); // any password
//! assert!(creds.verify(b"alice", b"s3cret"));
//! assert!(!creds.verify(b"alice", b"wrong"));
//! assert!(creds.verify(b"bob", b"whatever"));
//! assert!(!creds.verify(b"carol", b""));
//! assert!(creds.required());
//! assert!(Credentials::new().verify(b"anyone", b"")); // no table: no authentication
//! ```

use core::fmt;

/// Compares two byte strings in time that depends only on their lengths, not their contents.
///
/// ```
/// use relay_core::auth::constant_time_eq;
/// assert!(constant_time_eq(b"abc", b"abc"));
/// assert!(!constant_time_eq(b"abc", b"abd"));
/// assert!(!constant_time_eq(b"abc", b"ab"));
/// ```
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

/// Something that decides whether a user name and password are acceptable.
///
/// Implemented by [`Credentials`] and by any `Fn(&[u8], &[u8]) -> bool` (which always
/// requires authentication).
///
/// ```
/// use relay_core::auth::Authenticator;
/// let check = |user: &[u8], pass: &[u8]| user == b"u" && pass == b"p";
/// assert!(check.verify(b"u", b"p"));
/// assert!(Authenticator::required(&check));
/// ```
pub trait Authenticator {
    /// True when `user` / `pass` are accepted.
    fn verify(&self, user: &[u8], pass: &[u8]) -> bool;

    /// True when clients must authenticate; false when anyone is let in (a SOCKS5 server then
    /// offers "no authentication").
    fn required(&self) -> bool {
        true
    }
}

impl<F: Fn(&[u8], &[u8]) -> bool> Authenticator for F {
    fn verify(&self, user: &[u8], pass: &[u8]) -> bool {
        self(user, pass)
    }
}

/// The configured users: none, one, or many.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    users: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Credentials {
    /// An empty table: no authentication.
    pub fn new() -> Self {
        Credentials::default()
    }

    /// A table with one user.
    ///
    /// ```
    /// let c = relay_core::auth::Credentials::single("u", "p");
    /// assert!(c.verify(b"u", b"p") && !c.verify(b"u", b"q"));
    /// ```
    pub fn single(user: impl AsRef<[u8]>, pass: impl AsRef<[u8]>) -> Self {
        let mut c = Credentials::new();
        c.insert(user, pass);
        c
    }

    /// Adds a user, replacing the password of one already there. An empty password accepts
    /// any password for this user (GOST).
    pub fn insert(&mut self, user: impl AsRef<[u8]>, pass: impl AsRef<[u8]>) {
        let (user, pass) = (user.as_ref(), pass.as_ref());
        match self.users.iter_mut().find(|(u, _)| u == user) {
            Some((_, p)) => *p = pass.to_vec(),
            None => self.users.push((user.to_vec(), pass.to_vec())),
        }
    }

    /// True when no user is configured (then [`Credentials::verify`] accepts everything).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of configured users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when `user` is configured and `pass` is its password (or its password is empty).
    /// An empty table accepts everything. Every entry is compared, in constant time per entry.
    pub fn verify(&self, user: &[u8], pass: &[u8]) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let mut ok = false;
        for (u, p) in &self.users {
            let user_ok = constant_time_eq(u, user);
            let pass_ok = p.is_empty() | constant_time_eq(p, pass);
            ok |= user_ok & pass_ok;
        }
        ok
    }
}

impl Authenticator for Credentials {
    fn verify(&self, user: &[u8], pass: &[u8]) -> bool {
        Credentials::verify(self, user, pass)
    }

    fn required(&self) -> bool {
        !self.is_empty()
    }
}

impl fmt::Debug for Credentials {
    /// Lists the user names only; passwords are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.users.iter().map(|(u, _)| String::from_utf8_lossy(u)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces() {
        let mut c = Credentials::single("u", "old");
        c.insert("u", "new");
        assert_eq!(c.len(), 1);
        assert!(c.verify(b"u", b"new"));
        assert!(!c.verify(b"u", b"old"));
    }

    #[test]
    fn empty_password_accepts_any() {
        let c = Credentials::single("u", "");
        assert!(c.verify(b"u", b""));
        assert!(c.verify(b"u", b"x"));
        assert!(!c.verify(b"v", b""));
        assert!(!c.verify(b"", b""));
    }

    #[test]
    fn debug_hides_passwords() {
        let c = Credentials::single("alice", "topsecret");
        let s = format!("{c:?}");
        assert!(s.contains("alice") && !s.contains("topsecret"));
    }

    #[test]
    fn empty_table() {
        let c = Credentials::new();
        assert!(c.is_empty() && !Authenticator::required(&c));
        assert!(c.verify(b"", b""));
    }
}
