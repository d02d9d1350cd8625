//! REST handlers, one module per resource. Handlers are thin: parse input into domain types,
//! call the store (or, for document contents, the document layer), map the result.

pub mod approvals;
pub mod contributions;
pub mod devices;
pub mod events;
pub mod expenses;
pub mod export;
pub mod goals;
pub mod health;
pub mod history;
pub mod import;
pub mod messages;
pub mod partnerships;
pub mod server_doc;
pub mod shared;
pub mod users;
