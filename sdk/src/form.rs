//! `application/x-www-form-urlencoded` bodies with bracketed nested keys, the encoding
//! Stripe and many Rails-era APIs expect: `{"metadata":{"order":"42"}}` becomes
//! `metadata[order]=42`, lists become `items[0]=a&items[1]=b`, and nulls are omitted.

use serde_json::Value;

/// Encodes a JSON object as a bracketed form body.
pub fn encode(value: &Value) -> String {
    let mut pairs = Vec::new();
    if let Value::Object(map) = value {
        for (key, value) in map {
            flatten(key.clone(), value, &mut pairs);
        }
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &pairs {
        out.append_pair(key, value);
    }
    out.finish()
}

fn flatten(prefix: String, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => pairs.push((prefix, b.to_string())),
        Value::Number(n) => pairs.push((prefix, n.to_string())),
        Value::String(s) => pairs.push((prefix, s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(format!("{prefix}[{i}]"), item, pairs);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                flatten(format!("{prefix}[{key}]"), item, pairs);
            }
        }
    }
}

/// Percent-encodes one query or path component.
pub fn escape(component: &str) -> String {
    form_urlencoded::byte_serialize(component.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_objects_and_lists_use_brackets() {
        let body = encode(&json!({
            "amount": 2000,
            "currency": "usd",
            "metadata": {"order": "42"},
            "payment_method_types": ["card", "link"],
            "customer": null,
            "confirm": true
        }));
        assert_eq!(
            body,
            "amount=2000&confirm=true&currency=usd&metadata%5Border%5D=42\
             &payment_method_types%5B0%5D=card&payment_method_types%5B1%5D=link"
        );
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode(&json!({"q": "a b&c=d"})), "q=a+b%26c%3Dd");
        assert_eq!(escape("a/b c"), "a%2Fb+c");
    }
}
