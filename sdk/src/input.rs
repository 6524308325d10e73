//! Reading a capability's JSON input. The host validates inputs of the listed
//! capability contracts before a connector is called, so these helpers mostly turn a
//! missing or mistyped field of an unlisted capability into a clean `invalid-input`.

use crate::Error;
use serde_json::Value;

/// Parses the raw input document; it must be a JSON object.
pub fn parse(raw: &str) -> Result<Value, Error> {
    match serde_json::from_str::<Value>(raw) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(Error::invalid_input("input must be a JSON object")),
        Err(e) => Err(Error::invalid_input(format!("input is not JSON: {e}"))),
    }
}

/// A required string field.
pub fn str_field<'a>(input: &'a Value, key: &str) -> Result<&'a str, Error> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_input(format!("`{key}` is required and must be a string")))
}

/// An optional field, `None` when absent or null.
pub fn opt<'a>(input: &'a Value, key: &str) -> Option<&'a Value> {
    input.get(key).filter(|v| !v.is_null())
}

/// A path segment taken from input (an object id): letters, digits, `_` and `-` only,
/// so input can never change the request path.
pub fn id_field<'a>(input: &'a Value, key: &str) -> Result<&'a str, Error> {
    let id = str_field(input, key)?;
    let valid = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(id)
    } else {
        Err(Error::invalid_input(format!(
            "`{key}` is not a valid identifier"
        )))
    }
}
