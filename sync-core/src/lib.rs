//! SplitSave's shared core: the partnership document, the approval policy, merge enforcement,
//! materialization into relational rows and the split calculation. No I/O, so the server and
//! the client SDK apply exactly the same rules.
//!
//! Create a partnership's document, add an expense through the operations (which apply the
//! approval policy) and read the typed state back:
//!
//! ```
//! use splitsave_sync_core::document::{new_partnership_document, read_document, NewMember, NewPartnership};
//! use splitsave_sync_core::enums::{Category, Frequency};
//! use splitsave_sync_core::ids::{PartnershipId, UserId};
//! use splitsave_sync_core::money::{Currency, MinorUnits};
//! use splitsave_sync_core::ops::{self, Ctx, NewExpense, Outcome};
//! use splitsave_sync_core::time::Millis;
//!
//! let (alex, sam) = (UserId::new_v7(), UserId::new_v7());
//! let member = |user_id, name: &str, slot| NewMember { user_id, name: name.into(), income: None, slot };
//! let mut doc = new_partnership_document(&NewPartnership {
//!     id: PartnershipId::new_v7(),
//!     currency: Currency::USD,
//!     approval_threshold: MinorUnits(10_000), // 100.00: larger expenses need Sam's approval
//!     members: [member(alex, "Alex", 1), member(sam, "Sam", 2)],
//!     created_at: Millis::now(),
//! })?;
//! let ctx = Ctx { user: alex, now: Millis::now() };
//! let groceries = NewExpense {
//!     name: "Groceries".into(),
//!     amount: MinorUnits(8_550),
//!     category: Category::Groceries,
//!     frequency: Frequency::Weekly,
//! };
//! let outcome = doc.transact(|tx| ops::add_expense(tx, &ctx, &groceries)).map_err(|f| f.error)?.result;
//! assert!(matches!(outcome, Outcome::Applied { .. })); // under the threshold: no approval
//! let state = read_document(&doc)?;
//! assert_eq!(state.expenses[0].name, "Groceries");
//! assert_eq!(Currency::USD.from_minor(state.expenses[0].amount).to_string(), "85.50");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod document;
pub mod enforce;
pub mod enums;
pub mod events;
pub mod fields;
pub mod history;
pub mod ids;
pub mod import;
pub mod materialize;
pub mod money;
pub mod notifications;
pub mod ops;
pub mod policy;
pub mod presence;
pub mod protocol;
pub mod read;
pub mod rescue;
pub mod schema;
pub mod split;
pub mod split_doc;
pub mod strings;
pub mod time;
pub mod touched;
pub mod validate;
pub mod write;
