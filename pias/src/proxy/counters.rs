//! Every event the proxy counts, for the status report: each refusal and
//! drop has its own counter.

/// Everything counted, for the status report. Every refusal has a counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub malformed: u64,
    pub bad_tag: u64,
    pub replayed: u64,
    pub stale: u64,
    pub unknown_sender: u64,
    pub unknown_group: u64,
    pub joins: u64,
    pub leaves: u64,
    pub nack_capacity: u64,
    pub nack_auth: u64,
    pub nack_bad_request: u64,
    pub capacity_refusals: u64,
    pub tx_queue_full: u64,
    pub lookups_sent: u64,
    pub lookup_retries: u64,
    pub lookups_failed: u64,
    pub forwards_sent: u64,
    pub delivered: u64,
    pub no_member_drops: u64,
    pub invalidations_sent: u64,
    pub invalidations_received: u64,
    pub targets_down: u64,
    pub peers_down: u64,
    pub peers_up: u64,
    pub news_sent: u64,
    pub news_duplicates: u64,
    pub reports_sent: u64,
    pub oversized: u64,
}
