//! Personal data in events: which payload fields hold it, and what stands in for it once it
//! has been erased.
//!
//! The store keeps these fields encrypted (crypto-shredding, see `tenantry-eventstore`'s
//! `vault`); this table is the one place that says which fields they are. An erased field is
//! replaced by its kind's placeholder, which is a valid value of the field's type, so
//! aggregates still load and projections still apply after an erasure.

/// What a personal field holds, and so which key seals it and what replaces it once erased.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersonalKind {
    /// A person's email address (members, billing contact): sealed under the tenant's key.
    Email,
    /// Who the end customer is: sealed under that customer's own key. A stream that names a
    /// customer is that customer's: its other personal fields use the same key.
    CustomerRef,
    /// Free text written by or about a person (message content): sealed under the key of the
    /// stream's customer, or the tenant's key when the stream names none.
    Text,
}

impl PersonalKind {
    /// What an erased value of this kind reads as.
    pub fn placeholder(self) -> &'static str {
        match self {
            PersonalKind::Email => ERASED_EMAIL,
            PersonalKind::CustomerRef | PersonalKind::Text => ERASED_TEXT,
        }
    }
}

/// An erased email address (a valid address under the reserved `.invalid` top-level domain).
pub const ERASED_EMAIL: &str = "erased@erased.invalid";
/// An erased customer reference or text.
pub const ERASED_TEXT: &str = "[erased]";

/// `(event_type, payload field, kind)` of every personal field of every event.
const FIELDS: &[(&str, &str, PersonalKind)] = &[
    ("OrganizationCreated", "billing_email", PersonalKind::Email),
    (
        "OrganizationDetailsChanged",
        "billing_email",
        PersonalKind::Email,
    ),
    ("MemberInvited", "email", PersonalKind::Email),
    (
        "ConversationStarted",
        "customer_ref",
        PersonalKind::CustomerRef,
    ),
    ("MessageAppended", "content", PersonalKind::Text),
];

/// The personal fields of events of type `event_type`.
pub fn fields(event_type: &str) -> impl Iterator<Item = (&'static str, PersonalKind)> + '_ {
    FIELDS
        .iter()
        .filter(move |(t, _, _)| *t == event_type)
        .map(|(_, field, kind)| (*field, *kind))
}

/// True when events of type `event_type` carry personal data.
pub fn has_personal_fields(event_type: &str) -> bool {
    fields(event_type).next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CustomerRef, Email, MessageContent};

    #[test]
    fn placeholders_are_valid_values() {
        assert!(Email::parse(PersonalKind::Email.placeholder()).is_ok());
        assert!(CustomerRef::parse(PersonalKind::CustomerRef.placeholder()).is_ok());
        assert!(MessageContent::parse(PersonalKind::Text.placeholder()).is_ok());
    }

    #[test]
    fn the_table_names_each_personal_field() {
        let member: Vec<_> = fields("MemberInvited").collect();
        assert_eq!(member, vec![("email", PersonalKind::Email)]);
        assert!(has_personal_fields("MessageAppended"));
        assert!(!has_personal_fields("StoreCreated"));
    }
}
