//! Property tests of the request key: key order and whitespace never change it; any change to a
//! field that takes part in matching does. Also a fuzz of the cassette reader: arbitrary bytes
//! give an error or a cassette, never a panic. `PROPTEST_CASES` sets the case count (CI runs the
//! default below; run e.g. `PROPTEST_CASES=20000 cargo test -p traceforge --test key_properties`).

use proptest::prelude::*;
use serde_json::{Map, Value};
use traceforge::cassette::canonical::request_key;
use traceforge::cassette::{storage, Body, RecordedRequest};

/// `PROPTEST_CASES`, or 512.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        "[a-zA-Z0-9 é\"\\\\]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn request(body: Value) -> RecordedRequest {
    RecordedRequest::new("POST", "openai", "/chat/completions", Body::Json { json: body.into() })
}

/// The same value with every object's keys in reverse order, rendered with odd whitespace.
fn reordered_text(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.reverse();
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("\n  {} :\t{}", Value::String((*k).clone()), reordered_text(v)))
                .collect();
            format!("{{ {} }}", inner.join(" ,"))
        }
        Value::Array(items) => format!("[ {} ]", items.iter().map(reordered_text).collect::<Vec<_>>().join(" , ")),
        other => other.to_string(),
    }
}

/// Every leaf path of a value, for choosing one to change.
fn leaves(value: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                path.push(Value::String(key.clone()));
                leaves(item, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                path.push(Value::from(i));
                leaves(item, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn leaf_mut<'a>(value: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |node, step| match step {
        Value::String(key) => node.get_mut(key.as_str()),
        Value::Number(n) => n.as_u64().and_then(|i| node.get_mut(i as usize)),
        _ => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn key_ignores_key_order_and_whitespace(body in json_value()) {
        let text = reordered_text(&body);
        let reparsed: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(request_key(&request(body)), request_key(&request(reparsed)));
    }

    #[test]
    fn key_changes_with_any_leaf(body in json_value(), pick in any::<prop::sample::Index>(), salt in "[a-z]{1,4}") {
        let mut all = Vec::new();
        leaves(&body, &mut Vec::new(), &mut all);
        let chosen = pick.get(&all).clone();
        let mut changed = body.clone();
        if let Some(leaf) = leaf_mut(&mut changed, &chosen) {
            *leaf = Value::String(format!("{}-{salt}", leaf));
        }
        prop_assert_ne!(request_key(&request(body)), request_key(&request(changed)));
    }

    #[test]
    fn key_changes_with_method_path_upstream_and_query(body in json_value(), which in 0..4usize) {
        let original = request(body);
        let mut changed = original.clone();
        match which {
            0 => changed.method = "PUT".into(),
            1 => changed.path = "/embeddings".into(),
            2 => changed.upstream = "anthropic".into(),
            _ => { changed.query.insert("alt".into(), vec!["sse".into()]); }
        }
        prop_assert_ne!(request_key(&original), request_key(&changed));
    }

    #[test]
    fn the_cassette_reader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = storage::parse(std::path::Path::new("fuzz.json"), &bytes);
    }

    #[test]
    fn the_cassette_reader_never_panics_on_mangled_cassettes(body in json_value(), cut in any::<prop::sample::Index>()) {
        let mut map = Map::new();
        map.insert("format_version".into(), Value::from(1));
        map.insert("interactions".into(), Value::Array(vec![body]));
        let text = Value::Object(map).to_string();
        let end = cut.index(text.len() + 1);
        let _ = storage::parse(std::path::Path::new("fuzz.json"), &text.as_bytes()[..end]);
    }
}
