//! The two halves of a wallet's key, and where each keeps its fields.

use std::fmt;

/// Which half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client backup share (`/v1/backup`'s `share`), at the client's Birkhoff x.
    Client,
    /// The custodian backup share (the backup webhook's `share`), at the server's Birkhoff x.
    Custodian,
}

impl Role {
    /// The field holding the client's Birkhoff x in this half.
    pub fn client_x_field(self) -> &'static str {
        match self {
            Self::Client => "bks.client.x",
            Self::Custodian => "clientBk",
        }
    }

    /// The field holding the server's (custodian's) Birkhoff x in this half.
    pub fn server_x_field(self) -> &'static str {
        match self {
            Self::Client => "bks.server.x",
            Self::Custodian => "serverBk",
        }
    }

    /// The field(s) holding the wallet's public key in this half.
    pub fn pubkey_field(self) -> &'static str {
        match self {
            Self::Client => "pubkey",
            Self::Custodian => "x, y",
        }
    }

    /// The field(s) holding the client's partial public key in this half.
    pub fn client_partial_field(self) -> &'static str {
        match self {
            Self::Client => "partialPubkey.client",
            Self::Custodian => "clientPartialPubKey_x, clientPartialPubKey_y",
        }
    }

    /// The field(s) holding the server's (custodian's) partial public key in this half.
    pub fn server_partial_field(self) -> &'static str {
        match self {
            Self::Client => "partialPubkey.server",
            Self::Custodian => "serverPartialPubKey_x, serverPartialPubKey_y",
        }
    }

    /// The field(s) holding this half's own partial public key.
    pub fn own_partial_field(self) -> &'static str {
        match self {
            Self::Client => self.client_partial_field(),
            Self::Custodian => self.server_partial_field(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "client backup share",
            Self::Custodian => "custodian backup share",
        })
    }
}
