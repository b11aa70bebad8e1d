//! Module-name ownership shared by the sessions of one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A process-unique session identity (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A module name that another live session already serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module {module:?} is already served by session {owner}")]
pub struct NameTaken {
    /// The module.
    pub module: String,
    /// The session that owns it.
    pub owner: SessionId,
}

/// Which session serves which module name: first come, first served.
///
/// A name belongs to the session that registered it first, until that
/// session closes (or is dropped); a second session registering the same
/// name is refused instead of silently taking the route over. Cloning
/// shares the registry; give every session of one server (or one process)
/// the same registry through [`SessionConfig::registry`](super::SessionConfig::registry).
/// It does no I/O and never blocks for long (one short lock per call).
#[derive(Debug, Clone, Default)]
pub struct ModuleRegistry {
    owners: Arc<Mutex<HashMap<String, SessionId>>>,
}

impl ModuleRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        ModuleRegistry::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionId>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `module` to `session` unless another session owns it (claiming
    /// a name one already owns succeeds).
    pub fn claim(&self, module: &str, session: SessionId) -> Result<(), NameTaken> {
        let mut owners = self.lock();
        match owners.get(module) {
            Some(&owner) if owner != session => Err(NameTaken { module: module.to_owned(), owner }),
            Some(_) => Ok(()),
            None => {
                owners.insert(module.to_owned(), session);
                Ok(())
            }
        }
    }

    /// Gives `module` up if `session` owns it; true when it did.
    pub fn release(&self, module: &str, session: SessionId) -> bool {
        let mut owners = self.lock();
        if owners.get(module) == Some(&session) {
            owners.remove(module);
            true
        } else {
            false
        }
    }

    /// Gives up every name `session` owns; returns how many.
    pub fn release_all(&self, session: SessionId) -> usize {
        let mut owners = self.lock();
        let before = owners.len();
        owners.retain(|_, s| *s != session);
        before - owners.len()
    }

    /// The session serving `module`.
    pub fn owner(&self, module: &str) -> Option<SessionId> {
        self.lock().get(module).copied()
    }

    /// How many names are owned.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no name is owned.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_belongs_to_its_first_session_until_released() {
        let registry = ModuleRegistry::new();
        let (a, b) = (SessionId::next(), SessionId::next());
        assert!(b.get() > a.get(), "ids are never reused");
        assert_eq!(a.to_string(), format!("#{}", a.get()));
        registry.claim("m", a).unwrap();
        registry.claim("m", a).unwrap();
        assert_eq!(registry.claim("m", b), Err(NameTaken { module: "m".to_owned(), owner: a }));
        registry.claim("n", a).unwrap();
        registry.claim("o", b).unwrap();
        assert_eq!(registry.len(), 3);
        assert!(!registry.is_empty());
        assert!(!registry.release("m", b), "only its owner gives a name up");
        assert_eq!(registry.owner("m"), Some(a));
        assert!(registry.release("m", a));
        assert!(!registry.release("m", a), "already given up");
        registry.claim("m", b).unwrap();
        assert_eq!(registry.release_all(a), 1);
        assert_eq!(registry.release_all(b), 2);
        assert!(registry.is_empty());
    }
}
