//! Personal values in event payloads: where they are, whether one is sealed, what stands in
//! for them unopened, and the customer a stream's values are sealed for.

use serde_json::Value;
use tenantry_domain::personal::{self, PersonalKind};
use uuid::Uuid;

use crate::RecordedEvent;

use super::seal::{is_sealed, Sealed};

/// The personal string fields of a payload of `event_type`, with their kinds.
fn personal_values<'a>(
    event_type: &str,
    payload: &'a mut Value,
) -> Vec<(&'a mut String, PersonalKind)> {
    let Value::Object(map) = payload else {
        return Vec::new();
    };
    map.iter_mut()
        .filter_map(|(name, value)| {
            let (_, kind) = personal::fields(event_type).find(|(f, _)| f == name)?;
            match value {
                Value::String(text) => Some((text, kind)),
                _ => None,
            }
        })
        .collect()
}

/// True when a payload of `event_type` holds a sealed personal value.
pub fn holds_sealed(event_type: &str, payload: &Value) -> bool {
    personal::fields(event_type).any(|(name, _)| {
        payload
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(is_sealed)
    })
}

/// The personal string fields of `events`, with their kinds.
pub(super) fn personal_values_of(events: &mut [RecordedEvent]) -> Vec<(&mut String, PersonalKind)> {
    events
        .iter_mut()
        .flat_map(|e| personal_values(&e.event_type, &mut e.payload))
        .collect()
}

/// Replaces every sealed personal field of a payload with its placeholder: what aggregates
/// and projections see of personal data they do not open.
pub fn conceal(event_type: &str, payload: &mut Value) {
    if !personal::has_personal_fields(event_type) {
        return;
    }
    for (value, kind) in personal_values(event_type, payload) {
        if is_sealed(value) {
            *value = kind.placeholder().to_owned();
        }
    }
}

/// The key of the customer a stream belongs to: the key its customer reference was sealed
/// under, if it names one.
pub fn subject_of<'a>(events: impl IntoIterator<Item = &'a RecordedEvent>) -> Option<Uuid> {
    events.into_iter().find_map(|event| {
        personal::fields(&event.event_type)
            .filter(|(_, kind)| *kind == PersonalKind::CustomerRef)
            .find_map(|(name, _)| Sealed::parse(event.payload.get(name)?.as_str()?))
            .map(|sealed| sealed.key_id)
    })
}

#[cfg(test)]
mod tests {
    use tenantry_domain::TenantId;

    use super::*;
    use crate::vault::keys::DataKey;

    #[test]
    fn conceal_puts_placeholders_for_sealed_fields_only() {
        let tenant = TenantId::from_uuid(Uuid::new_v4());
        let mut payload = serde_json::json!({
            "member_id": "x",
            "email": DataKey::generate(tenant.as_uuid()).seal("ada@example.com").unwrap(),
            "role": "admin",
        });
        conceal("MemberInvited", &mut payload);
        assert_eq!(payload["email"], "erased@erased.invalid");
        assert_eq!(payload["role"], "admin");
        let mut plain = serde_json::json!({ "email": "legacy@example.com" });
        conceal("MemberInvited", &mut plain);
        assert_eq!(plain["email"], "legacy@example.com");
    }
}
