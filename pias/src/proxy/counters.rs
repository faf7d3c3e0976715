//! Every event the proxy counts, for the status report, grouped by role: each
//! refusal and drop has its own counter.

/// Everything counted, by role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Datagrams refused before any role saw them, and the send queue.
    pub wire: WireCounters,
    /// Up/down state of the other proxies, news and probes.
    pub membership: MembershipCounters,
    /// The JAP role: registrations, health, delivery, reports.
    pub jap: JapCounters,
    /// The RAP role: reports held, lookups answered.
    pub rap: RapCounters,
    /// The IAP role: client packets, lookups, the cache.
    pub iap: IapCounters,
}

/// Refusals at the door: nothing else changed for any of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireCounters {
    /// Not a message (framing, body, field domain).
    pub malformed: u64,
    /// A tag that does not verify.
    pub bad_tag: u64,
    /// A proxy message seen before.
    pub replayed: u64,
    /// A proxy message below its sender's replay window.
    pub stale: u64,
    /// A proxy message from an earlier life of its sender.
    pub stale_incarnation: u64,
    /// A sender that is not in the roster (or is this proxy).
    pub unknown_sender: u64,
    /// A proxy message addressed to another proxy.
    pub misdirected: u64,
    /// A target message for a group this deployment does not serve.
    pub unknown_group: u64,
    /// A packet or message too large to carry.
    pub oversized: u64,
    /// A datagram dropped because the send queue was full.
    pub tx_queue_full: u64,
}

/// Membership and proximity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MembershipCounters {
    /// Peers this proxy came to believe down.
    pub peers_down: u64,
    /// Peers this proxy came to believe up again.
    pub peers_up: u64,
    /// Peers seen in a new life (restarted).
    pub restarts_seen: u64,
    /// News messages sent (floods and re-floods).
    pub news_sent: u64,
    /// News that changed nothing here (duplicates and older news).
    pub news_duplicates: u64,
    /// Times this proxy denied news of its own death.
    pub refutations: u64,
    /// Declarations of a peer's death held back by flap damping.
    pub damped: u64,
    /// Floods refused because too many were in progress.
    pub floods_refused: u64,
    /// Peers refused because the peer table was full of peers it must keep.
    pub peers_refused: u64,
    /// Peers whose state was forgotten (silent, up) to make room for another.
    pub peers_forgotten: u64,
}

/// The JAP role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JapCounters {
    /// Joins that added a target.
    pub joins: u64,
    /// Leaves that removed one.
    pub leaves: u64,
    /// Registrations that were fresh and authentic but refused for lack of room.
    pub nack_capacity: u64,
    /// Registrations refused as `NotResponsible` (a leave of an unknown target).
    pub nack_not_responsible: u64,
    /// Registrations older or newer than the freshness window (no reply).
    pub stale_registrations: u64,
    /// Registrations whose nonce was seen before (no reply).
    pub replayed_registrations: u64,
    /// Registrations not sent from the target's own address (no reply).
    pub wrong_source: u64,
    /// Pongs whose nonce was not the outstanding ping's.
    pub unexpected_pongs: u64,
    /// Rejoin requests sent to targets this proxy does not hold.
    pub rejoins_sent: u64,
    /// Client packets delivered to a target.
    pub delivered: u64,
    /// Targets that went down.
    pub targets_down: u64,
    /// Unanswered pings not counted against their target: the host fell a
    /// receive ring behind while they were out, so the pong may have been
    /// lost before the proxy saw it.
    pub misses_excused: u64,
    /// Invalidations sent to IAPs.
    pub invalidations_sent: u64,
    /// Count reports sent (one per RAP).
    pub reports_sent: u64,
    /// Of those, re-sent because a RAP had not acknowledged.
    pub report_retries: u64,
    /// Of those, periodic refreshes.
    pub report_refreshes: u64,
    /// Flows not recorded because the flow table was full (the packet still goes).
    pub flows_refused: u64,
    /// Groups refused because the group table was full.
    pub groups_refused: u64,
}

/// The RAP role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RapCounters {
    /// Count reports received.
    pub reports: u64,
    /// JAP entries forgotten because they were not refreshed.
    pub expired: u64,
    /// Lookups answered.
    pub lookups: u64,
    /// Packets forwarded to a JAP on a lookup.
    pub forwards: u64,
    /// Lookups whose packet found no JAP it had not been offered to.
    pub no_member_drops: u64,
    /// Reports refused because the RAP tables were full.
    pub refused: u64,
}

/// The IAP role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IapCounters {
    /// Client packets for a group this deployment does not serve (no lookup).
    pub unknown_group: u64,
    /// Lookups sent.
    pub lookups_sent: u64,
    /// Lookups re-sent to another RAP (timeout or empty answer).
    pub lookup_retries: u64,
    /// Lookups that every RAP left unanswered or empty.
    pub lookups_failed: u64,
    /// Client packets dropped while the group is known to have no member.
    pub negative_hits: u64,
    /// Packets forwarded to a cached JAP.
    pub forwards: u64,
    /// Lookups without a packet that refresh a cached list in use.
    pub list_refreshes: u64,
    /// Invalidations received.
    pub invalidations: u64,
    /// Packets dropped after every JAP they could go to bounced them.
    pub bounced_drops: u64,
    /// Lookups or cache entries refused because a table was full.
    pub refused: u64,
}
