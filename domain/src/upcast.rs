//! Upcasters: events stored under an older `schema_version` are rewritten to the current
//! shape before they are decoded, so old history keeps loading after an event evolves.

use serde_json::Value;

/// True when a payload of `stream_type`/`event_type` stored at `schema_version` needs
/// [`upcast`].
pub fn is_outdated(stream_type: &str, event_type: &str, schema_version: i32) -> bool {
    matches!(
        (stream_type, event_type, schema_version),
        ("store", "StoreCreated", 1)
    )
}

/// Rewrites `payload` of `stream_type`/`event_type`, stored at `schema_version`, to the
/// current schema. Current payloads pass through unchanged.
pub fn upcast(
    stream_type: &str,
    event_type: &str,
    schema_version: i32,
    mut payload: Value,
) -> Value {
    if let ("store", "StoreCreated", 1) = (stream_type, event_type, schema_version) {
        // v1 recorded the shop's `url` (scheme and path included) and knew no platforms.
        if let Value::Object(map) = &mut payload {
            if let Some(Value::String(url)) = map.remove("url") {
                let host = url
                    .split("://")
                    .last()
                    .unwrap_or_default()
                    .split(['/', '?', '#', ':'])
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                map.insert("domain".into(), Value::String(host));
            }
            map.entry("platform")
                .or_insert(Value::String("custom".into()));
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::StoreEvent;
    use crate::EVENT_PAYLOAD_TAG;

    #[test]
    fn a_v1_store_created_loads_as_v2() {
        let v1 = json!({
            "store_id": "0190a1f2-0000-7000-8000-000000000001",
            "organization_id": "0190a1f2-0000-7000-8000-000000000002",
            "name": "Main shop",
            "url": "https://Shop.Example.com/en/?ref=x",
        });
        assert!(is_outdated("store", "StoreCreated", 1));
        assert!(!is_outdated("store", "StoreCreated", 2));
        let payload = upcast("store", "StoreCreated", 1, v1);
        let event: StoreEvent = serde_json::from_value(json!({
            "event_type": "StoreCreated",
            EVENT_PAYLOAD_TAG: payload,
        }))
        .unwrap();
        match event {
            StoreEvent::StoreCreated {
                domain, platform, ..
            } => {
                assert_eq!(domain.as_str(), "shop.example.com");
                assert_eq!(platform, crate::Platform::Custom);
            }
            other => panic!("{other:?}"),
        }
    }
}
