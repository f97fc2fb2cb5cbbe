//! Connection slots: a cap for the whole server and one per client
//! address, so that one address cannot take every slot.
//!
//! IPv6 clients are counted by their /64: one host usually has a whole /64
//! to pick addresses from. IPv4-mapped IPv6 addresses count as the IPv4
//! address they carry.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefused {
    #[error("the server is at its connection limit")]
    ServerFull,
    #[error("the client's address is at its connection limit")]
    AddressFull,
}

impl SlotRefused {
    /// A metrics label.
    pub fn label(self) -> &'static str {
        match self {
            SlotRefused::ServerFull => "max-connections",
            SlotRefused::AddressFull => "max-connections-per-ip",
        }
    }
}

/// The connections a server holds, in all and per client address.
pub struct ConnectionSlots {
    all: Arc<Semaphore>,
    per_address: u32,
    /// Open connections by client address. An entry exists only while its
    /// address has a connection open, so there are never more entries than
    /// the server-wide cap.
    by_address: Mutex<HashMap<IpAddr, u32>>,
}

impl ConnectionSlots {
    /// `total` connections at once, at most `per_address` from one address.
    pub fn new(total: usize, per_address: u32) -> Arc<Self> {
        Arc::new(Self {
            all: Arc::new(Semaphore::new(total)),
            per_address: per_address.max(1),
            by_address: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `peer`, held until the slot is dropped.
    pub fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionSlot, SlotRefused> {
        let key = address_key(peer);
        let permit = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| SlotRefused::ServerFull)?;
        let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let open = by_address.entry(key).or_insert(0);
        if *open >= self.per_address {
            return Err(SlotRefused::AddressFull);
        }
        *open += 1;
        Ok(ConnectionSlot {
            slots: self.clone(),
            key,
            _permit: permit,
        })
    }

    /// Connections open from `peer`'s address (or /64).
    #[cfg(test)]
    pub(crate) fn open_from(&self, peer: IpAddr) -> u32 {
        let by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        by_address.get(&address_key(peer)).copied().unwrap_or(0)
    }

    /// Client addresses with a connection open.
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.by_address
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn release(&self, key: IpAddr) {
        let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = by_address.get_mut(&key) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                by_address.remove(&key);
            }
        }
    }
}

/// One connection's place; released on drop.
pub struct ConnectionSlot {
    slots: Arc<ConnectionSlots>,
    key: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.slots.release(self.key);
    }
}

fn address_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}
