//! Password hashing for `userconf.txt`: SHA-512 crypt (`$6$`), the format Raspberry Pi OS's userconf reads, via
//! the system's libcrypt (libxcrypt on Debian).

use crate::error::{invalid, Error, Result};
use std::ffi::{CStr, CString};

#[link(name = "crypt")]
extern "C" {
    fn crypt(phrase: *const libc::c_char, setting: *const libc::c_char) -> *mut libc::c_char;
}

const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Hashes `password` with SHA-512 crypt and a random 16-character salt.
pub fn hash_password(password: &str) -> Result<String> {
    use rand::Rng;
    if password.is_empty() {
        return invalid("the password is empty: give a password, or --password-hash");
    }
    let mut rng = rand::rng();
    let salt: String = (0..16)
        .map(|_| SALT_CHARS[rng.random_range(0..SALT_CHARS.len())] as char)
        .collect();
    let setting = CString::new(format!("$6${salt}$")).expect("no NUL");
    let phrase = CString::new(password)
        .map_err(|_| Error::Invalid("the password contains a NUL byte".into()))?;
    // SAFETY: both arguments are valid NUL-terminated strings; crypt returns a pointer to a static buffer (or
    // NULL), which is copied at once. The builder calls it from one thread.
    let out = unsafe { crypt(phrase.as_ptr(), setting.as_ptr()) };
    if out.is_null() {
        return invalid("libcrypt could not hash the password");
    }
    let hash = unsafe { CStr::from_ptr(out) }
        .to_string_lossy()
        .into_owned();
    if !hash.starts_with("$6$") {
        return invalid("libcrypt could not hash the password with SHA-512");
    }
    Ok(hash)
}

/// Checks a given crypt hash can go into `userconf.txt`.
pub fn check_hash(hash: &str) -> Result<()> {
    if !hash.starts_with('$') || hash.contains(':') || hash.contains(char::is_whitespace) {
        return invalid(format!(
            "--password-hash {hash:?} is not a crypt(3) hash: make one with `openssl passwd -6` or `mkpasswd -m \
             sha-512`"
        ));
    }
    Ok(())
}

/// Checks a Linux user name (`[a-z_][a-z0-9_-]*`, at most 32 characters).
pub fn check_user(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return invalid(format!(
            "--user {name:?} is not a valid user name: use lower-case letters, digits, '_' or '-', starting with a \
             letter, at most 32 characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_with_crypt() {
        let h = hash_password("raspberry").unwrap();
        assert!(h.starts_with("$6$"));
        let again = unsafe {
            let p = CString::new("raspberry").unwrap();
            let s = CString::new(h.clone()).unwrap();
            CStr::from_ptr(crypt(p.as_ptr(), s.as_ptr()))
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(again, h);
        check_hash(&h).unwrap();
        assert!(check_hash("plain").is_err());
        check_user("pi").unwrap();
        assert!(check_user("Pi").is_err());
    }
}
