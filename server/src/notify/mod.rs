//! Messages the server sends to people outside a request: mail now (password resets,
//! invitations); push notifications later.

pub mod mail;
