//! sync-core's behaviour tests, one binary: the document and its operations, enforcement on
//! merge, and convergence of replicas whatever the order of their changes.

mod common;
mod convergence;
mod document;
mod enforcement;
mod history;
mod js_schema;
mod notifications;
mod op_cases;
