//! A management client: requests sealed with the appliance's management key
//! (a fresh random nonce and the current time each), answers believed only
//! when sealed with the same key and carrying the request's nonce. Every
//! wait is bounded: `tries` attempts of `per_try` each.

use pias::addr::Group;
use pias::mgmt::{Body, Op, Refusal, Request, Response, MAX_REQUEST, MAX_RESPONSE, VERSION};
use pias::status::{GroupReport, ProxyReport, RoutingReport, Status};
use pias::wire::Key;
use std::fmt;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Unix time now, ms (0 before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A random nonce from the OS's generator.
pub fn random_nonce() -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A request for `op` with `nonce`, timed now and sealed with `key`.
pub fn sealed_request(key: &Key, nonce: u64, op: Op) -> Vec<u8> {
    let mut buf = [0u8; MAX_REQUEST];
    let n = Request {
        nonce,
        unix_ms: unix_ms(),
        op,
    }
    .seal(key, &mut buf)
    .unwrap_or(0);
    buf[..n].to_vec()
}

/// Why a request got no usable answer; each says what to do in one line.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing sealed with the key came back.
    NoAnswer {
        /// Whom we asked.
        target: SocketAddr,
        /// Attempts made.
        tries: u32,
        /// How long each waited.
        per_try: Duration,
    },
    /// The appliance speaks another protocol version.
    Version {
        /// Whom we asked.
        target: SocketAddr,
        /// Its version.
        theirs: u8,
    },
    /// The appliance answered, but not with what was asked.
    Unexpected {
        /// Whom we asked.
        target: SocketAddr,
        /// What came back.
        body: String,
    },
    /// The socket failed.
    Io(std::io::Error),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoAnswer {
                target,
                tries,
                per_try,
            } => write!(
                f,
                "no answer from {target} ({tries} tries of {} ms): check that it is up and \
                 reachable, that this host's address is in its management.allow, that the key is \
                 its management.key, and that both clocks are right within 10 s (an appliance \
                 answers nothing it cannot verify)",
                per_try.as_millis()
            ),
            ClientError::Version { target, theirs } => write!(
                f,
                "{target} speaks management protocol version {theirs}, this tool version \
                 {VERSION}: use the piasctl built with its release"
            ),
            ClientError::Unexpected { target, body } => {
                write!(f, "{target} answered with {body}")
            }
            ClientError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// A management client of one appliance.
pub struct Client {
    sock: UdpSocket,
    target: SocketAddr,
    key: Key,
    nonce: u64,
    /// Attempts per request (at least 1).
    pub tries: u32,
    /// How long each attempt waits for its answer.
    pub per_try: Duration,
}

impl Client {
    /// A client sending from `sock` to `target`, sealing with `key`; 3 tries
    /// of 500 ms each.
    pub fn new(sock: UdpSocket, target: SocketAddr, key: Key) -> std::io::Result<Client> {
        Ok(Client {
            sock,
            target,
            key,
            nonce: random_nonce()?,
            tries: 3,
            per_try: Duration::from_millis(500),
        })
    }

    /// Whom it asks.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sends one request and waits up to `timeout` for its answer (no retry;
    /// a new nonce each time). Datagrams not sealed with the key, or
    /// answering another request, are skipped.
    pub fn request_once(&mut self, op: Op, timeout: Duration) -> Result<Response, ClientError> {
        self.nonce = self.nonce.wrapping_add(1);
        let q = sealed_request(&self.key, self.nonce, op);
        self.sock.send_to(&q, self.target)?;
        let deadline = Instant::now() + timeout;
        let mut reply = [0u8; MAX_RESPONSE + 1];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::NoAnswer {
                    target: self.target,
                    tries: 1,
                    per_try: timeout,
                });
            }
            self.sock.set_read_timeout(Some(left))?;
            let (len, from) = match self.sock.recv_from(&mut reply) {
                Ok(r) => r,
                Err(e) if timed_out(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            if from != self.target {
                continue;
            }
            let Ok(resp) = Response::open(&self.key, &reply[..len]) else {
                // Not sealed with our key: an impostor or garbage.
                continue;
            };
            if resp.nonce != self.nonce {
                continue;
            }
            if resp.body == Body::Refused(Refusal::Version) {
                return Err(ClientError::Version {
                    target: self.target,
                    theirs: resp.version,
                });
            }
            return Ok(resp);
        }
    }

    /// Sends `op` up to `tries` times of `per_try` each (UDP may be lost).
    pub fn request(
        &mut self,
        op: Op,
        tries: u32,
        per_try: Duration,
    ) -> Result<Response, ClientError> {
        let tries = tries.max(1);
        for _ in 0..tries {
            match self.request_once(op, per_try) {
                Err(ClientError::NoAnswer { .. }) => {}
                other => return other,
            }
        }
        Err(ClientError::NoAnswer {
            target: self.target,
            tries,
            per_try,
        })
    }

    fn ask(&mut self, op: Op) -> Result<Body, ClientError> {
        let (tries, per_try) = (self.tries, self.per_try);
        Ok(self.request(op, tries, per_try)?.body)
    }

    fn unexpected(&self, body: &Body) -> ClientError {
        ClientError::Unexpected {
            target: self.target,
            body: format!("{body:?}"),
        }
    }

    /// The appliance's status.
    pub fn status(&mut self) -> Result<Status, ClientError> {
        match self.ask(Op::Status)? {
            Body::Status(s) => Ok(s),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The proxy's and the data path's counters.
    pub fn proxy_report(&mut self) -> Result<ProxyReport, ClientError> {
        match self.ask(Op::Proxy)? {
            Body::Proxy(r) => Ok(r),
            other => Err(self.unexpected(&other)),
        }
    }

    /// What BGP is doing.
    pub fn routing(&mut self) -> Result<RoutingReport, ClientError> {
        match self.ask(Op::Routing)? {
            Body::Routing(r) => Ok(r),
            other => Err(self.unexpected(&other)),
        }
    }

    /// What the appliance knows of group `g` as IAP, JAP and RAP.
    pub fn group(&mut self, g: Group) -> Result<GroupReport, ClientError> {
        match self.ask(Op::Group(g))? {
            Body::Group(r) => Ok(r),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Starts (`true`) or ends a drain: the routing report as the request
    /// left it, or `Refused(NoBgp)` as a `Body`.
    pub fn drain(&mut self, on: bool) -> Result<Body, ClientError> {
        self.ask(if on { Op::Drain } else { Op::Undrain })
    }

    /// Asks for a clean stop: `ShuttingDown`, or `Refused(ShutdownDisabled)`.
    pub fn shutdown(&mut self) -> Result<Body, ClientError> {
        self.ask(Op::Shutdown)
    }
}

/// Whether a socket read ended by its read timeout (not by an error).
pub fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
