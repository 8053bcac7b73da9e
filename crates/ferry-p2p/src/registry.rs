//! Who may use the embedded relay, and how a user's client is found: each logged-in client
//! registers its endpoint id with the server (signed with the endpoint's key, so nobody
//! registers a key they do not hold) and renews it with every presence heartbeat. The relay
//! admits registered, fresh endpoints only.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use iroh::{EndpointId, PublicKey, SecretKey, Signature};
use iroh_relay::server::{Access, AccessControl, ClientRequest};

use crate::P2pError;

/// What a client signs to register its endpoint for `user`.
pub fn registration_message(user: &str) -> Vec<u8> {
    format!("ferry p2p endpoint of user {user}").into_bytes()
}

/// A registration's signature (hex), made with the endpoint's key.
pub fn sign_registration(key: &SecretKey, user: &str) -> String {
    key.sign(&registration_message(user)).to_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `signature` (hex) over `user`'s registration message was made by the key
/// of `endpoint_id` (text, as `EndpointId` prints).
pub fn verify_registration(endpoint_id: &str, signature: &str, user: &str) -> Result<EndpointId, P2pError> {
    let key: PublicKey = endpoint_id.parse().map_err(|_| P2pError::Protocol("not an endpoint id".into()))?;
    let bytes: Vec<u8> = (0..signature.len())
        .step_by(2)
        .map(|i| signature.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| P2pError::Protocol("the signature is not hex".into()))?;
    let bytes: [u8; Signature::LENGTH] =
        bytes.try_into().map_err(|_| P2pError::Protocol("a signature has 64 bytes".into()))?;
    key.verify(&registration_message(user), &Signature::from_bytes(&bytes))
        .map_err(|_| P2pError::Protocol("the signature does not match the endpoint id".into()))?;
    Ok(key)
}

#[derive(Debug, Clone)]
struct Entry {
    user: String,
    at: Instant,
    /// Takes transfers (a watching inbox); else only sends (admitted to the relay).
    receives: bool,
}

/// Most endpoints one user may have registered at once (the oldest goes first).
const MAX_PER_USER: usize = 8;

/// Registered endpoints, fresh for `ttl` after their last registration.
#[derive(Debug)]
pub struct Registry {
    ttl: Duration,
    by_endpoint: Mutex<HashMap<EndpointId, Entry>>,
}

impl Registry {
    /// An empty registry whose entries last `ttl` (three presence heartbeats).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, by_endpoint: Mutex::default() }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, Entry>> {
        self.by_endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or renews) one of `user`'s endpoints; `receives` when it takes transfers
    /// (a user's newest receiving endpoint is where senders go). A user has at most a few.
    pub fn register(&self, id: EndpointId, user: &str, receives: bool) {
        let mut map = self.entries();
        let ttl = self.ttl;
        map.retain(|_, e| e.at.elapsed() < ttl);
        map.insert(id, Entry { user: user.to_owned(), at: Instant::now(), receives });
        let mut mine: Vec<(EndpointId, Instant)> =
            map.iter().filter(|(_, e)| e.user == user).map(|(k, e)| (*k, e.at)).collect();
        if mine.len() > MAX_PER_USER {
            mine.sort_by_key(|(_, at)| *at);
            for (old, _) in &mine[..mine.len() - MAX_PER_USER] {
                map.remove(old);
            }
        }
    }

    /// Forgets `user`'s endpoint `id` (its client went offline); `false` when it is not theirs.
    pub fn forget(&self, id: &EndpointId, user: &str) -> bool {
        let mut map = self.entries();
        if map.get(id).is_some_and(|e| e.user == user) {
            map.remove(id);
            return true;
        }
        false
    }

    /// Forgets all of `user`'s endpoints (logout, account removed).
    pub fn forget_user(&self, user: &str) {
        self.entries().retain(|_, e| e.user != user);
    }

    /// The freshest receiving endpoint of `user`, if any.
    pub fn endpoint_of(&self, user: &str) -> Option<EndpointId> {
        let ttl = self.ttl;
        self.entries()
            .iter()
            .filter(|(_, e)| e.user == user && e.receives && e.at.elapsed() < ttl)
            .max_by_key(|(_, e)| e.at)
            .map(|(k, _)| *k)
    }

    /// The user whose fresh endpoint `id` is (who a connection comes from).
    pub fn user_of(&self, id: &EndpointId) -> Option<String> {
        self.entries().get(id).filter(|e| e.at.elapsed() < self.ttl).map(|e| e.user.clone())
    }

    /// Whether `id` is registered and fresh.
    pub fn admits(&self, id: &EndpointId) -> bool {
        self.entries().get(id).is_some_and(|e| e.at.elapsed() < self.ttl)
    }
}

/// The relay's admission: registered, fresh endpoints only.
#[derive(Debug, Clone)]
pub struct RegisteredOnly(pub std::sync::Arc<Registry>);

impl AccessControl for RegisteredOnly {
    async fn on_connect(&self, request: &ClientRequest) -> Access {
        if self.0.admits(&request.endpoint_id()) {
            Access::Allow
        } else {
            Access::Deny { reason: Some("log in to the ferry server and watch your inbox first".into()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_holder_registers_and_entries_lapse() {
        let key = SecretKey::generate();
        let id = key.public();
        let sig = sign_registration(&key, "bob");
        assert_eq!(verify_registration(&id.to_string(), &sig, "bob").unwrap(), id);
        assert!(verify_registration(&id.to_string(), &sig, "alice").is_err(), "bound to the user");
        let other = SecretKey::generate().public();
        assert!(verify_registration(&other.to_string(), &sig, "bob").is_err(), "bound to the key");
        assert!(verify_registration(&id.to_string(), "zz", "bob").is_err());

        let r = Registry::new(Duration::from_millis(50));
        r.register(id, "bob", true);
        assert_eq!(r.endpoint_of("bob"), Some(id));
        assert!(r.admits(&id) && !r.admits(&other));
        // Bob sending from another client: admitted, but transfers still go to his inbox.
        r.register(other, "bob", false);
        assert!(r.admits(&id) && r.admits(&other));
        assert_eq!(r.endpoint_of("bob"), Some(id), "senders are not where transfers go");
        assert_eq!((r.user_of(&other).as_deref(), r.user_of(&SecretKey::generate().public())), (Some("bob"), None));
        assert!(!r.forget(&id, "alice"), "only bob forgets bob's endpoints");
        assert!(r.forget(&id, "bob") && !r.admits(&id) && r.endpoint_of("bob").is_none());
        for _ in 0..MAX_PER_USER + 3 {
            r.register(SecretKey::generate().public(), "bob", false);
        }
        assert!(!r.admits(&other), "the oldest of too many went");
        std::thread::sleep(Duration::from_millis(60));
        r.register(id, "bob", true);
        assert_eq!(r.endpoint_of("bob"), Some(id));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.endpoint_of("bob"), None, "lapsed");
        r.register(id, "bob", true);
        r.forget_user("bob");
        assert!(!r.admits(&id));
    }
}
