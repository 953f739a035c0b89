//! Helpers shared by the hub's unit tests: a hub with fixed contacts, and its sessions' frames
//! as JSON.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Contacts, Hub, HubConfig, Session};

/// Contacts from a fixed map.
struct FixedContacts(HashMap<String, Vec<String>>);

impl Contacts for FixedContacts {
    fn contacts_of(&self, user: &str) -> Vec<String> {
        self.0.get(user).cloned().unwrap_or_default()
    }
}

pub(super) fn hub_with(config: HubConfig, pairs: &[(&str, &str)]) -> Hub {
    let hub = Hub::new(config);
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (a, b) in pairs {
        map.entry(a.to_string()).or_default().push(b.to_string());
        map.entry(b.to_string()).or_default().push(a.to_string());
    }
    hub.attach_contacts(Arc::new(FixedContacts(map)));
    hub
}

pub(super) fn users(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Every frame queued to `session` so far, as JSON.
pub(super) fn drain(session: &mut Session) -> Vec<serde_json::Value> {
    let mut frames = Vec::new();
    while let Some(frame) = session.try_recv() {
        frames.push(crate::api::ws::codec::to_json(&frame));
    }
    frames
}
