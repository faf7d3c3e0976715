//! NOTIFICATION codes (RFC 4271 §4.5, RFC 4486, RFC 6608) and the error
//! value every parse failure and FSM fault turns into.

use core::fmt;

/// Error codes and subcodes.
pub mod code {
    /// Message Header Error.
    pub const HEADER: u8 = 1;
    /// 1/1: the marker is not all ones.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// 1/2.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// 1/3.
    pub const BAD_MESSAGE_TYPE: u8 = 3;

    /// OPEN Message Error.
    pub const OPEN: u8 = 2;
    /// 2/0: a recognised optional parameter is malformed.
    pub const UNSPECIFIC: u8 = 0;
    /// 2/1.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    /// 2/2.
    pub const BAD_PEER_AS: u8 = 2;
    /// 2/3.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// 2/4.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// 2/6: hold time 1 or 2.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// 2/7 (RFC 5492): a capability we require is missing.
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;

    /// UPDATE Message Error.
    pub const UPDATE: u8 = 3;
    /// 3/1.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// 3/3.
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// 3/4.
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    /// 3/5.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// 3/6.
    pub const INVALID_ORIGIN: u8 = 6;
    /// 3/10.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// 3/11.
    pub const MALFORMED_AS_PATH: u8 = 11;

    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;

    /// Finite State Machine Error; subcodes RFC 6608.
    pub const FSM: u8 = 5;
    /// 5/1: unexpected message in OpenSent.
    pub const FSM_IN_OPEN_SENT: u8 = 1;
    /// 5/2: unexpected message in OpenConfirm.
    pub const FSM_IN_OPEN_CONFIRM: u8 = 2;
    /// 5/3: unexpected message in Established.
    pub const FSM_IN_ESTABLISHED: u8 = 3;

    /// Cease; subcodes RFC 4486.
    pub const CEASE: u8 = 6;
    /// 6/2.
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// 6/8: out of resources (our buffers).
    pub const OUT_OF_RESOURCES: u8 = 8;
}

/// Most data bytes an error carries: a length, a type, a capability, or the
/// erroneous attribute of an UPDATE error (RFC 4271 wants it whole; one
/// longer than this is sent cut short).
const MAX_DATA: usize = 64;

/// A fault that ends the session: the NOTIFICATION to send (code, subcode,
/// data).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    data: [u8; MAX_DATA],
    data_len: u8,
}

impl Error {
    /// An error without data.
    pub const fn new(code: u8, subcode: u8) -> Error {
        Error {
            code,
            subcode,
            data: [0; MAX_DATA],
            data_len: 0,
        }
    }

    /// An error with data (at most 64 bytes are kept).
    pub fn with_data(code: u8, subcode: u8, data: &[u8]) -> Error {
        let mut e = Error::new(code, subcode);
        let n = data.len().min(MAX_DATA);
        e.data[..n].copy_from_slice(&data[..n]);
        e.data_len = n as u8;
        e
    }

    /// The data field.
    pub fn data(&self) -> &[u8] {
        &self.data[..usize::from(self.data_len)]
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Error({}/{} {:02x?})",
            self.code,
            self.subcode,
            self.data()
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({})",
            self.code,
            self.subcode,
            describe(self.code, self.subcode)
        )
    }
}

/// A NOTIFICATION as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notification<'a> {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Data (diagnostic; for Cease it may hold a shutdown message).
    pub data: &'a [u8],
}

/// A name for a code and subcode, for logs.
pub fn describe(c: u8, s: u8) -> &'static str {
    use code::*;
    match (c, s) {
        (HEADER, CONNECTION_NOT_SYNCHRONIZED) => "connection not synchronized",
        (HEADER, BAD_MESSAGE_LENGTH) => "bad message length",
        (HEADER, BAD_MESSAGE_TYPE) => "bad message type",
        (HEADER, _) => "message header error",
        (OPEN, UNSUPPORTED_VERSION) => "unsupported version",
        (OPEN, BAD_PEER_AS) => "bad peer AS",
        (OPEN, BAD_BGP_IDENTIFIER) => "bad BGP identifier",
        (OPEN, UNSUPPORTED_OPTIONAL_PARAMETER) => "unsupported optional parameter",
        (OPEN, UNACCEPTABLE_HOLD_TIME) => "unacceptable hold time",
        (OPEN, UNSUPPORTED_CAPABILITY) => "unsupported capability",
        (OPEN, _) => "OPEN message error",
        (UPDATE, MALFORMED_ATTRIBUTE_LIST) => "malformed attribute list",
        (UPDATE, MISSING_WELL_KNOWN_ATTRIBUTE) => "missing well-known attribute",
        (UPDATE, ATTRIBUTE_FLAGS_ERROR) => "attribute flags error",
        (UPDATE, ATTRIBUTE_LENGTH_ERROR) => "attribute length error",
        (UPDATE, INVALID_ORIGIN) => "invalid ORIGIN",
        (UPDATE, INVALID_NETWORK_FIELD) => "invalid network field",
        (UPDATE, MALFORMED_AS_PATH) => "malformed AS_PATH",
        (UPDATE, _) => "UPDATE message error",
        (HOLD_TIMER_EXPIRED, _) => "hold timer expired",
        (FSM, _) => "finite state machine error",
        (CEASE, ADMINISTRATIVE_SHUTDOWN) => "administrative shutdown",
        (CEASE, OUT_OF_RESOURCES) => "out of resources",
        (CEASE, _) => "cease",
        _ => "unknown error code",
    }
}
