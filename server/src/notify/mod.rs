//! Messages the server sends to people outside a request: mail (password resets, invitations)
//! and push notifications from the durable outbox.

pub mod mail;
pub mod push_outbox;
