//! REST handlers, one module per resource. Handlers are thin: parse input into domain types,
//! call the store (or, for document contents, the document layer), map the result.

pub mod health;
pub mod partnerships;
pub mod users;
pub mod documents;
pub mod events;
pub mod contributions;
pub mod expenses;
pub mod server_doc;
pub mod approvals;
pub mod goals;
pub mod messages;
