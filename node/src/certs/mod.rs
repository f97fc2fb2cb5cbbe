//! The certificates the HTTPS listener serves, picked by SNI from two sets:
//! the node's own (`tls.certificates` in its config file, or development
//! certificates made on demand with `tls.source = "self-signed"`) and the
//! tenants' certificates synced from the control plane.
//!
//! For a handshake with SNI name `n`, the first that exists wins:
//!
//! 1. a synced certificate for `n` exactly;
//! 2. a file certificate for `n` exactly;
//! 3. a synced certificate for `*.p`, where `n` is one label then `p`;
//! 4. a file certificate for `*.p`;
//! 5. as before synced certificates existed (and for clients without SNI):
//!    the file certificate marked `default` (or listing `*`), else in
//!    `self-signed` mode a development certificate for `n`, else none, and
//!    the handshake fails with an alert.
//!
//! So the more specific name wins, and at equal specificity the synced
//! certificate does: the control plane knows who owns a name now. Within
//! the synced set, the certificate valid longest (later notAfter, then
//! higher id) holds a name, so a renewal takes over as soon as it is
//! synced; within the file, the first listed.
//!
//! Every lookup is a hash-map get (exact name, then the wildcard kept under
//! the name's parent), never a scan, so a thousand tenants' certificates
//! cost a handshake what one does. Each set sits behind an atomic swap:
//! the synced set changes with the routing table, the file set on
//! `SIGHUP`; a connection keeps the certificate its handshake picked.

mod development;
mod load;
mod resolver;

pub use load::{TlsError, parse_bundle};
pub use resolver::{CertResolver, CertSet, OwnCertificates};
