//! Single-hop BFD (RFC 5880 asynchronous mode over UDP 3784, RFC 5881),
//! sans-IO: `handle_packet` with each control packet from the neighbour,
//! `poll_transmit` for the next one to send, `handle_timeout` at
//! `poll_timeout`. Time is in microseconds. No authentication (the A bit is
//! refused): single-hop BFD relies on TTL 255 (GTSM), checked by the caller.

/// Single-hop BFD control packets go to this UDP port (RFC 5881).
pub const PORT: u16 = 3784;
/// Multihop BFD control packets go to this one (RFC 5883).
pub const MULTIHOP_PORT: u16 = 4784;
/// A control packet without authentication.
pub const PACKET_LEN: usize = 24;
/// While a session is not Up, packets go at most once a second (RFC 5880 §6.8.3).
const SLOW_TX_US: u32 = 1_000_000;

/// Session states (RFC 5880 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BfdState {
    /// Held down by its operator.
    AdminDown,
    /// Not up.
    Down,
    /// Heard the neighbour's Down; waiting for it to see us.
    Init,
    /// Both ends hear each other.
    Up,
}

impl BfdState {
    fn code(self) -> u8 {
        match self {
            BfdState::AdminDown => 0,
            BfdState::Down => 1,
            BfdState::Init => 2,
            BfdState::Up => 3,
        }
    }

    fn from_code(c: u8) -> BfdState {
        match c & 3 {
            0 => BfdState::AdminDown,
            1 => BfdState::Down,
            2 => BfdState::Init,
            _ => BfdState::Up,
        }
    }
}

/// Diagnostic codes we send.
mod diag {
    pub const NONE: u8 = 0;
    pub const DETECTION_TIME_EXPIRED: u8 = 1;
    pub const NEIGHBOR_SIGNALED_DOWN: u8 = 3;
}

/// Why a received packet was discarded (RFC 5880 §6.8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BfdError {
    /// Shorter than 24 bytes, or its length field disagrees.
    Length,
    /// Not version 1.
    Version,
    /// Detect multiplier 0, multipoint bit, or My Discriminator 0.
    Field,
    /// Authentication present (not supported).
    Auth,
    /// Your Discriminator 0 outside Down/AdminDown, or not ours.
    Discriminator,
}

/// A control packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// Diagnostic.
    pub diag: u8,
    /// Sender's state.
    pub state: BfdState,
    /// Poll bit.
    pub poll: bool,
    /// Final bit.
    pub fin: bool,
    /// Detect multiplier.
    pub detect_mult: u8,
    /// Sender's discriminator.
    pub my_disc: u32,
    /// The discriminator the sender has for us (0: unknown).
    pub your_disc: u32,
    /// Desired min TX interval (µs).
    pub desired_min_tx: u32,
    /// Required min RX interval (µs).
    pub required_min_rx: u32,
    /// Required min echo RX interval (µs).
    pub required_min_echo_rx: u32,
}

impl Control {
    /// Parses and checks a packet (the checks of RFC 5880 §6.8.6 that do
    /// not need session state).
    pub fn parse(b: &[u8]) -> Result<Control, BfdError> {
        let h: &[u8; PACKET_LEN] = b
            .get(..PACKET_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(BfdError::Length)?;
        if h[0] >> 5 != 1 {
            return Err(BfdError::Version);
        }
        let len = usize::from(h[3]);
        if len < PACKET_LEN || len > b.len() {
            return Err(BfdError::Length);
        }
        let flags = h[1];
        if flags & 0x04 != 0 {
            return Err(BfdError::Auth);
        }
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let c = Control {
            diag: h[0] & 0x1f,
            state: BfdState::from_code(flags >> 6),
            poll: flags & 0x20 != 0,
            fin: flags & 0x10 != 0,
            detect_mult: h[2],
            my_disc: u32_at(4),
            your_disc: u32_at(8),
            desired_min_tx: u32_at(12),
            required_min_rx: u32_at(16),
            required_min_echo_rx: u32_at(20),
        };
        if c.detect_mult == 0 || flags & 0x01 != 0 || c.my_disc == 0 {
            return Err(BfdError::Field);
        }
        if c.your_disc == 0 && !matches!(c.state, BfdState::Down | BfdState::AdminDown) {
            return Err(BfdError::Discriminator);
        }
        Ok(c)
    }

    /// The packet's 24 bytes.
    pub fn emit(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0] = (1 << 5) | (self.diag & 0x1f);
        b[1] = (self.state.code() << 6)
            | if self.poll { 0x20 } else { 0 }
            | if self.fin { 0x10 } else { 0 };
        b[2] = self.detect_mult;
        b[3] = PACKET_LEN as u8;
        for (i, v) in [
            self.my_disc,
            self.your_disc,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        ]
        .into_iter()
        .enumerate()
        {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}

/// Our side's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BfdConfig {
    /// Our discriminator (non-zero, unique per session).
    pub local_disc: u32,
    /// How often we would like to send once Up (µs).
    pub desired_min_tx: u32,
    /// How often we can take packets (µs).
    pub required_min_rx: u32,
    /// Missed packets that make the session Down.
    pub detect_mult: u8,
}

/// What happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BfdCounters {
    /// Packets accepted.
    pub rx: u64,
    /// Packets discarded (malformed, authenticated, wrong discriminator).
    pub rx_bad: u64,
    /// Packets sent.
    pub tx: u64,
    /// Transitions to Up.
    pub ups: u64,
    /// Transitions from Up to Down (detection timeout or the neighbour's Down).
    pub downs: u64,
}

/// One BFD session.
pub struct BfdSession {
    cfg: BfdConfig,
    state: BfdState,
    diag: u8,
    remote_disc: u32,
    remote_min_rx: u32,
    remote_desired_tx: u32,
    remote_mult: u8,
    /// Our Desired Min TX now (1 s until Up, then the configured one).
    desired_tx: u32,
    /// A Poll sequence is running (our timers changed).
    polling: bool,
    /// Answer a Poll with a Final at once.
    send_final: bool,
    /// The neighbour's last packet said AdminDown (RFC 5882 §3.2: not a
    /// path failure, so clients should not act on the Down it causes).
    neighbour_admin_down: bool,
    next_tx: u64,
    detect_at: Option<u64>,
    rng: u32,
    counters: BfdCounters,
}

impl BfdSession {
    /// A session in Down, sending its first packet at `now`.
    pub fn new(cfg: BfdConfig, now: u64) -> BfdSession {
        BfdSession {
            cfg,
            state: BfdState::Down,
            diag: diag::NONE,
            remote_disc: 0,
            remote_min_rx: 1,
            remote_desired_tx: 0,
            remote_mult: 0,
            desired_tx: SLOW_TX_US.max(cfg.desired_min_tx),
            polling: false,
            send_final: false,
            neighbour_admin_down: false,
            next_tx: now,
            detect_at: None,
            rng: cfg.local_disc | 1,
            counters: BfdCounters::default(),
        }
    }

    /// The session's state.
    pub fn state(&self) -> BfdState {
        self.state
    }

    /// Whether the neighbour's last packet said AdminDown: the session is
    /// Down by its operator's choice, not because the path failed.
    pub fn neighbour_admin_down(&self) -> bool {
        self.neighbour_admin_down
    }

    /// What happened so far.
    pub fn counters(&self) -> BfdCounters {
        self.counters
    }

    /// The detection time in force (µs), once the neighbour was heard.
    pub fn detection_time(&self) -> Option<u64> {
        (self.remote_mult > 0).then(|| {
            u64::from(self.remote_mult)
                * u64::from(self.cfg.required_min_rx.max(self.remote_desired_tx))
        })
    }

    /// When `handle_timeout` or `poll_transmit` has work.
    pub fn poll_timeout(&self) -> u64 {
        self.detect_at.map_or(self.next_tx, |d| d.min(self.next_tx))
    }

    /// One packet from the neighbour (already checked for TTL 255).
    pub fn handle_packet(&mut self, now: u64, bytes: &[u8]) -> Result<(), BfdError> {
        let c = match Control::parse(bytes) {
            Ok(c) if c.your_disc != 0 && c.your_disc != self.cfg.local_disc => {
                Err(BfdError::Discriminator)
            }
            other => other,
        }
        .inspect_err(|_| self.counters.rx_bad += 1)?;
        self.counters.rx += 1;
        self.remote_disc = c.my_disc;
        self.remote_min_rx = c.required_min_rx;
        self.remote_desired_tx = c.desired_min_tx;
        self.remote_mult = c.detect_mult;
        self.neighbour_admin_down = c.state == BfdState::AdminDown;
        if c.fin {
            self.polling = false;
        }
        if c.poll {
            self.send_final = true;
            self.next_tx = now;
        }
        if self.state == BfdState::AdminDown {
            return Ok(());
        }
        let before = self.state;
        match (self.state, c.state) {
            (BfdState::Init | BfdState::Up, BfdState::AdminDown)
            | (BfdState::Up, BfdState::Down) => {
                self.diag = diag::NEIGHBOR_SIGNALED_DOWN;
                self.go(now, BfdState::Down);
            }
            (BfdState::Down, BfdState::Down) => self.go(now, BfdState::Init),
            (BfdState::Down, BfdState::Init) | (BfdState::Init, BfdState::Init | BfdState::Up) => {
                self.go(now, BfdState::Up)
            }
            _ => {}
        }
        if before == self.state || self.state != BfdState::Down {
            self.detect_at = self.detection_time().map(|d| now.saturating_add(d));
        }
        Ok(())
    }

    fn go(&mut self, now: u64, to: BfdState) {
        match (self.state, to) {
            (_, BfdState::Up) => {
                self.counters.ups += 1;
                self.diag = diag::NONE;
                // Faster now: tell the neighbour with a Poll sequence.
                self.desired_tx = self.cfg.desired_min_tx;
                self.polling = true;
                self.next_tx = now;
            }
            (BfdState::Up, _) => {
                self.counters.downs += 1;
                self.desired_tx = SLOW_TX_US.max(self.cfg.desired_min_tx);
            }
            _ => {}
        }
        if to == BfdState::Down {
            self.detect_at = None;
        }
        self.state = to;
    }

    /// Runs the detection timer at `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.detect_at.is_some_and(|t| t <= now) {
            self.detect_at = None;
            if matches!(self.state, BfdState::Init | BfdState::Up) {
                self.diag = diag::DETECTION_TIME_EXPIRED;
                self.go(now, BfdState::Down);
            }
            self.remote_disc = 0;
        }
    }

    /// The next packet, if one is due at `now`.
    pub fn poll_transmit(&mut self, now: u64) -> Option<[u8; PACKET_LEN]> {
        if now < self.next_tx {
            return None;
        }
        // A neighbour that wants no packets (Required Min RX 0) gets none,
        // but a Final is always sent.
        let interval = self.desired_tx.max(self.remote_min_rx);
        self.next_tx = now.saturating_add(self.jittered(interval));
        if self.remote_min_rx == 0 && !self.send_final {
            return None;
        }
        let fin = core::mem::take(&mut self.send_final);
        self.counters.tx += 1;
        Some(
            Control {
                diag: self.diag,
                state: self.state,
                poll: self.polling && !fin,
                fin,
                detect_mult: self.cfg.detect_mult,
                my_disc: self.cfg.local_disc,
                your_disc: self.remote_disc,
                desired_min_tx: self.desired_tx,
                required_min_rx: self.cfg.required_min_rx,
                required_min_echo_rx: 0,
            }
            .emit(),
        )
    }

    /// 75–100% of `interval` (75–90% with a multiplier of 1), RFC 5880 §6.8.7.
    fn jittered(&mut self, interval: u32) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        let pct = if self.cfg.detect_mult == 1 {
            75 + self.rng % 16
        } else {
            75 + self.rng % 26
        };
        u64::from(interval) * u64::from(pct) / 100
    }
}

#[cfg(test)]
mod tests;
