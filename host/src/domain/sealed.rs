//! Sealed values as they are stored: what the vault produces and the store keeps.
//! Opening or sealing them is the vault's (`credentials::vault`); no I/O here.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A nonce and an AES-GCM ciphertext (tag included), stored as one base64 string of
/// `nonce ‖ ciphertext`: a vend decodes two of these on every read, and one compact
/// string parses several times faster than a hex-encoded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub(crate) nonce: [u8; 12],
    pub(crate) ciphertext: Vec<u8>,
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut joined = Vec::with_capacity(12 + self.ciphertext.len());
        joined.extend_from_slice(&self.nonce);
        joined.extend_from_slice(&self.ciphertext);
        s.serialize_str(&STANDARD.encode(joined))
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        let mut joined = STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        if joined.len() < 12 + 16 {
            return Err(serde::de::Error::custom("sealed value too short"));
        }
        let ciphertext = joined.split_off(12);
        Ok(Sealed {
            nonce: joined.try_into().expect("12 bytes"),
            ciphertext,
        })
    }
}

/// A sealed credential as stored: the secret under its data key, the data key under
/// the KEK named by `key_id`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecret {
    /// The KEK that wraps the data key.
    pub key_id: String,
    pub(crate) wrapped_key: Sealed,
    pub(crate) secret: Sealed,
}
