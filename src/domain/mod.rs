//! The domain: values and rules with no I/O. Everything above depends on it; it depends on
//! nothing of the crate.

pub mod allowed_keys;
pub mod checkpoint;
pub mod ciphertext;
pub mod esdk_message;
pub mod hook;
pub mod model;
pub mod request;
pub mod request_ids;
pub mod secret;
pub mod share;
pub mod source;
pub mod text;
pub mod wallet_key;
