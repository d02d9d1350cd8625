//! SplitSave's shared core: the partnership document, the approval policy, merge enforcement,
//! materialization into relational rows and the split calculation. No I/O, so the server and
//! the client SDK apply exactly the same rules.

pub mod enums;
pub mod ids;
pub mod time;
pub mod money;
pub mod split;
pub mod document;
pub mod read;
pub mod schema;
pub mod write;
pub mod ops;
pub mod policy;
pub mod validate;
pub mod enforce;
pub mod touched;
pub mod materialize;
