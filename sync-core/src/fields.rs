//! The stored type of every field of schema 1: one table that the writers, enforcement's
//! normalization of string shapes and the generated TypeScript types all read.
//!
//! Automerge holds a string either as a **Text** object (a sequence of characters that merges
//! character by character; what `@automerge/automerge` 3.x writes for a plain JS string, read
//! back as a JS `string`) or as a **scalar string** (one atomic value; read back in JS as an
//! `ImmutableString`). Each string field of the schema has exactly one of the two
//! (`docs/js-field-types.md` has the measurements that chose them):
//!
//! - free text (names, message texts, approval notes) is Text: what JS writes by default, and
//!   affordable (about 1.4 bytes of heap per character once loaded);
//! - identifiers and enums are scalar strings: they must change whole (two concurrent in-place
//!   edits of a Text `status` merge into a value of neither vocabulary), and Text would double
//!   the document's op count for values nobody edits character by character.
//!
//! Every writer in this crate writes the declared type, and a merge that leaves a field in the
//! other type gets it rewritten in the declared one by the server ([`crate::enforce`]), the way
//! other wrong-shaped values are corrected.

use crate::enums::*;
use crate::policy::limits;
use crate::schema::Collection;

/// How a string field is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringKind {
    /// A Text object.
    Text,
    /// A scalar string.
    Scalar,
}

/// A closed vocabulary, stored as its lower-case string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vocabulary {
    /// [`Category`].
    Category,
    /// [`Frequency`].
    Frequency,
    /// [`ItemStatus`].
    ItemStatus,
    /// [`GoalType`].
    GoalType,
    /// [`Priority`].
    Priority,
    /// [`ApprovalStatus`].
    ApprovalStatus,
    /// [`RequestType`].
    RequestType,
    /// [`MessageType`].
    MessageType,
    /// [`PartnershipStatus`].
    PartnershipStatus,
}

impl Vocabulary {
    /// Every vocabulary.
    pub const ALL: [Vocabulary; 9] = [
        Vocabulary::Category,
        Vocabulary::Frequency,
        Vocabulary::ItemStatus,
        Vocabulary::GoalType,
        Vocabulary::Priority,
        Vocabulary::ApprovalStatus,
        Vocabulary::RequestType,
        Vocabulary::MessageType,
        Vocabulary::PartnershipStatus,
    ];

    /// Its name in generated code (`snake_case`).
    pub fn name(&self) -> &'static str {
        match self {
            Vocabulary::Category => "category",
            Vocabulary::Frequency => "frequency",
            Vocabulary::ItemStatus => "item_status",
            Vocabulary::GoalType => "goal_type",
            Vocabulary::Priority => "priority",
            Vocabulary::ApprovalStatus => "approval_status",
            Vocabulary::RequestType => "request_type",
            Vocabulary::MessageType => "message_type",
            Vocabulary::PartnershipStatus => "partnership_status",
        }
    }

    /// Its values, in declaration order.
    pub fn values(&self) -> Vec<&'static str> {
        fn of<T>(all: &[T], s: fn(&T) -> &'static str) -> Vec<&'static str> {
            all.iter().map(s).collect()
        }
        match self {
            Vocabulary::Category => of(Category::ALL, Category::as_str),
            Vocabulary::Frequency => of(Frequency::ALL, Frequency::as_str),
            Vocabulary::ItemStatus => of(ItemStatus::ALL, ItemStatus::as_str),
            Vocabulary::GoalType => of(GoalType::ALL, GoalType::as_str),
            Vocabulary::Priority => of(Priority::ALL, Priority::as_str),
            Vocabulary::ApprovalStatus => of(ApprovalStatus::ALL, ApprovalStatus::as_str),
            Vocabulary::RequestType => of(RequestType::ALL, RequestType::as_str),
            Vocabulary::MessageType => of(MessageType::ALL, MessageType::as_str),
            Vocabulary::PartnershipStatus => of(PartnershipStatus::ALL, PartnershipStatus::as_str),
        }
    }
}

/// What a field holds and how it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Free text of 1 to `max` characters, stored as Text.
    Text {
        /// Most characters after trimming.
        max: usize,
    },
    /// An identifier (a UUID, a user's or an entity's), stored as a scalar string.
    Id,
    /// An ISO 4217 currency code, stored as a scalar string.
    Currency,
    /// One value of a vocabulary, stored as a scalar string.
    Enum(Vocabulary),
    /// An integer amount in the currency's minor units.
    MinorUnits,
    /// Unix milliseconds, stored as an integer (a client's Timestamp is read too).
    Time,
    /// An Automerge Counter of minor units.
    Counter,
    /// A boolean.
    Bool,
    /// A small integer.
    Int,
    /// A map keyed by user id, each value of the given type.
    PerUser(&'static FieldType),
    /// A nested map with these fields, each optional.
    Map(&'static [Field]),
}

impl FieldType {
    /// How a string of this type is stored, or `None` when it is not a string.
    pub fn string_kind(&self) -> Option<StringKind> {
        match self {
            FieldType::Text { .. } => Some(StringKind::Text),
            FieldType::Id | FieldType::Currency | FieldType::Enum(_) => Some(StringKind::Scalar),
            _ => None,
        }
    }
}

/// One field of an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its key in the entity's map.
    pub name: &'static str,
    /// What it holds.
    pub ty: FieldType,
    /// Whether it may be null.
    pub nullable: bool,
}

const fn f(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        nullable: false,
    }
}

const fn nullable(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        nullable: true,
    }
}

const NAME: FieldType = FieldType::Text {
    max: limits::NAME_MAX,
};
const LONG_TEXT: FieldType = FieldType::Text {
    max: limits::MESSAGE_MAX,
};
const fn vocab(v: Vocabulary) -> FieldType {
    FieldType::Enum(v)
}

/// `partnership`.
pub const PARTNERSHIP: &[Field] = &[
    f("id", FieldType::Id),
    f("currency", FieldType::Currency),
    f("approval_threshold", FieldType::MinorUnits),
    f("status", vocab(Vocabulary::PartnershipStatus)),
];

/// `members.<user_id>`.
pub const MEMBER: &[Field] = &[
    f("name", NAME),
    nullable("income", FieldType::MinorUnits),
    f("slot", FieldType::Int),
];

/// `expenses.<id>`.
pub const EXPENSE: &[Field] = &[
    f("name", NAME),
    f("amount", FieldType::MinorUnits),
    f("category", vocab(Vocabulary::Category)),
    f("frequency", vocab(Vocabulary::Frequency)),
    f("added_by", FieldType::Id),
    f("status", vocab(Vocabulary::ItemStatus)),
    f("created_at", FieldType::Time),
    f("updated_at", FieldType::Time),
];

/// `goals.<id>`.
pub const GOAL: &[Field] = &[
    f("name", NAME),
    f("target_amount", FieldType::MinorUnits),
    f("saved_amount", FieldType::Counter),
    f("goal_type", vocab(Vocabulary::GoalType)),
    f("priority", vocab(Vocabulary::Priority)),
    f("added_by", FieldType::Id),
    f("status", vocab(Vocabulary::ItemStatus)),
    f("created_at", FieldType::Time),
    f("updated_at", FieldType::Time),
];

/// `goal_contributions.<id>`.
pub const GOAL_CONTRIBUTION: &[Field] = &[
    f("goal_id", FieldType::Id),
    f("user_id", FieldType::Id),
    f("amount", FieldType::MinorUnits),
    f("created_at", FieldType::Time),
];

/// `approvals.<id>.request_data`: the proposed fields of an expense (`name`, `amount`,
/// `category`, `frequency`) or of a goal (`name`, `target_amount`, `goal_type`, `priority`),
/// each present only when proposed.
pub const REQUEST_DATA: &[Field] = &[
    f("name", NAME),
    f("amount", FieldType::MinorUnits),
    f("category", vocab(Vocabulary::Category)),
    f("frequency", vocab(Vocabulary::Frequency)),
    f("target_amount", FieldType::MinorUnits),
    f("goal_type", vocab(Vocabulary::GoalType)),
    f("priority", vocab(Vocabulary::Priority)),
];

/// `approvals.<id>`.
pub const APPROVAL: &[Field] = &[
    f("requested_by", FieldType::Id),
    f("request_type", vocab(Vocabulary::RequestType)),
    f("target_id", FieldType::Id),
    f("request_data", FieldType::Map(REQUEST_DATA)),
    nullable("message", LONG_TEXT),
    f("status", vocab(Vocabulary::ApprovalStatus)),
    nullable("responded_by", FieldType::Id),
    nullable("responded_at", FieldType::Time),
    f("created_at", FieldType::Time),
];

/// `messages.<id>`.
pub const MESSAGE: &[Field] = &[
    f("sender_id", FieldType::Id),
    f("text", LONG_TEXT),
    f("message_type", vocab(Vocabulary::MessageType)),
    f("read_by_recipient", FieldType::Bool),
    f("created_at", FieldType::Time),
];

const PAID_AT: FieldType = FieldType::Time;

/// `contributions."YYYY-MM"`.
pub const MONTH: &[Field] = &[
    f("total_required", FieldType::MinorUnits),
    f("amounts", FieldType::PerUser(&FieldType::MinorUnits)),
    f("paid", FieldType::PerUser(&PAID_AT)),
];

/// The fields of an entity of `c`.
pub fn of(c: Collection) -> &'static [Field] {
    match c {
        Collection::Members => MEMBER,
        Collection::Expenses => EXPENSE,
        Collection::Goals => GOAL,
        Collection::GoalContributions => GOAL_CONTRIBUTION,
        Collection::Approvals => APPROVAL,
        Collection::Messages => MESSAGE,
        Collection::Contributions => MONTH,
    }
}

/// The declared string kind of `field` in an entity of `c` (`None`: not a string field).
pub fn string_kind(c: Collection, field: &str) -> Option<StringKind> {
    of(c)
        .iter()
        .find(|f| f.name == field)
        .and_then(|f| f.ty.string_kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_text_and_identifiers_and_enums_are_scalars() {
        let text = [
            (Collection::Members, "name"),
            (Collection::Expenses, "name"),
            (Collection::Goals, "name"),
            (Collection::Approvals, "message"),
            (Collection::Messages, "text"),
        ];
        for (c, name) in text {
            assert_eq!(string_kind(c, name), Some(StringKind::Text), "{c:?}.{name}");
        }
        for (c, name) in [
            (Collection::Expenses, "status"),
            (Collection::Expenses, "added_by"),
            (Collection::Approvals, "request_type"),
            (Collection::Approvals, "responded_by"),
            (Collection::Messages, "message_type"),
        ] {
            assert_eq!(
                string_kind(c, name),
                Some(StringKind::Scalar),
                "{c:?}.{name}"
            );
        }
        assert_eq!(string_kind(Collection::Expenses, "amount"), None);
        assert_eq!(
            REQUEST_DATA[0].ty.string_kind(),
            Some(StringKind::Text),
            "request_data.name"
        );
    }

    #[test]
    fn every_vocabulary_lists_its_values() {
        assert_eq!(
            Vocabulary::ItemStatus.values(),
            ["active", "pending_approval", "archived"]
        );
        for v in Vocabulary::ALL {
            assert!(!v.values().is_empty(), "{}", v.name());
        }
    }
}
