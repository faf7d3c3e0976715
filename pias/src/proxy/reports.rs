//! The JAP's count reports to its groups' RAPs as soft state: sent when the
//! count leaves its band, acknowledged, retried, refreshed, re-sent on RAP changes.

use super::timers::Timer;
use super::{Proxy, MAX_K};
use crate::addr::Group;
use crate::time::Instant;
use crate::wire::{Message, ProxyId};
use heapless::Vec as HVec;

/// Groups handled per pass of the report timer (a stack batch, so no allocation).
const BATCH: usize = 32;
/// Retries of a group's last report (its 0) before the group is let go.
const CLOSING_RETRIES: u8 = 3;

impl Proxy {
    /// Every JAP group re-examines its RAP set at the next report timer
    /// (membership changed).
    pub(super) fn jap_raps_changed(&mut self, now: Instant) {
        if self.jap.groups.is_empty() {
            return;
        }
        for (_, j) in self.jap.groups.iter_mut() {
            j.dirty = true;
        }
        self.timers.set_earliest(Timer::Reports, now);
    }

    /// We refuted news of our death: every group reports to its RAPs again.
    pub(super) fn jap_report_all_again(&mut self, now: Instant) {
        if self.jap.groups.is_empty() {
            return;
        }
        for (_, j) in self.jap.groups.iter_mut() {
            j.raps.clear();
            j.acked.clear();
            j.dirty = true;
        }
        self.timers.set_earliest(Timer::Reports, now);
    }

    /// `p` restarted: if it is a RAP of ours it lost our counts; send them again.
    pub(super) fn jap_peer_restarted(&mut self, now: Instant, p: ProxyId) {
        let mut any = false;
        for (_, j) in self.jap.groups.iter_mut() {
            if j.raps.contains(&p) {
                j.acked.retain(|r| *r != p);
                j.raps.retain(|r| *r != p);
                j.dirty = true;
                any = true;
            }
        }
        if any {
            self.timers.set_earliest(Timer::Reports, now);
        }
    }

    /// Sends the group's count to its RAPs when it left the band (or became or
    /// stopped being zero), and the current count to RAPs that do not have it
    /// (the RAP set changed). Removes a group left without any target.
    pub(super) fn report_if_needed(&mut self, now: Instant, g: Group) {
        let raps = self.raps_of(&g);
        let (live, entries) = self.jap.live_weight(&g);
        let Some(j) = self.jap.groups.get_mut(&g) else {
            return;
        };
        j.dirty = false;
        let out_of_band = match j.reported {
            None => live > 0,
            Some(last) if (last == 0) != (live == 0) => true,
            Some(last) => {
                let band = u64::from(last) * u64::from(j.band_pct) / 100;
                let (lo, hi) = (u64::from(last).saturating_sub(band), u64::from(last) + band);
                !(lo..=hi).contains(&u64::from(live))
            }
        };
        let mut send_to: HVec<ProxyId, MAX_K> = HVec::new();
        if out_of_band {
            j.reported = Some(live);
            j.acked.clear();
            j.retries = 0;
            send_to = raps.clone();
        } else if j.reported.is_some_and(|c| c > 0) {
            send_to = raps
                .iter()
                .copied()
                .filter(|r| !j.raps.contains(r))
                .collect();
        }
        j.acked.retain(|r| raps.contains(r));
        j.raps = raps;
        let count = j.reported.unwrap_or(0);
        if !send_to.is_empty() {
            j.retry_at = Some(now + self.cfg.report_retry);
            j.refresh_at = now + self.cfg.report_refresh;
            self.timers
                .set_earliest(Timer::Reports, now + self.cfg.report_retry);
        }
        let emptied = out_of_band && live == 0;
        if emptied || entries == 0 {
            self.invalidate_iaps(now, g);
        }
        for to in send_to {
            self.send_report(now, to, g, count);
        }
        self.close_if_done(g);
    }

    /// Removes a group left without any target once its RAPs have its 0 (all
    /// acknowledged, nothing outstanding, or `CLOSING_RETRIES` retries without
    /// an answer: then their entries expire).
    fn close_if_done(&mut self, g: Group) {
        let Some(j) = self.jap.groups.get(&g) else {
            return;
        };
        let acked = j.raps.iter().all(|r| j.acked.contains(r));
        let waiting = j.retry_at.is_some() && j.retries < CLOSING_RETRIES;
        if j.targets.is_empty() && (acked || !waiting) {
            self.jap.groups.remove(&g);
        }
    }

    fn send_report(&mut self, now: Instant, to: ProxyId, group: Group, count: u32) {
        self.counters.jap.reports_sent += 1;
        let msg = Message::CountReport {
            group,
            count,
            coord: self.coord,
        };
        self.send_proxy(now, to, &msg);
    }

    /// No live target left: tell the IAPs that use this JAP for the group now,
    /// rather than at their next packet.
    fn invalidate_iaps(&mut self, now: Instant, g: Group) {
        let Some(j) = self.jap.groups.get_mut(&g) else {
            return;
        };
        let iaps = core::mem::take(&mut j.iaps);
        for iap in iaps {
            self.counters.jap.invalidations_sent += 1;
            let msg = Message::Invalidate {
                group: g,
                gone: true,
                bounced: None,
            };
            self.send_proxy(now, iap, &msg);
        }
    }

    /// A RAP acknowledged our count for `group`, giving the band to use.
    pub(super) fn on_report_ack(&mut self, from: ProxyId, group: Group, count: u32, band: u8) {
        let Some(j) = self.jap.groups.get_mut(&group) else {
            return;
        };
        if j.reported != Some(count) || !j.raps.contains(&from) {
            return;
        }
        // 0 means exact counts (every change is reported).
        j.band_pct = band.min(100);
        if !j.acked.contains(&from) {
            let _ = j.acked.push(from);
        }
        if j.raps.iter().all(|r| j.acked.contains(r)) {
            j.retry_at = None;
            j.retries = 0;
        }
        self.close_if_done(group);
    }

    /// Report retries (RAPs that did not acknowledge), periodic refreshes,
    /// and groups whose targets or RAPs changed.
    pub(super) fn report_timers(&mut self, now: Instant) {
        let mut next = Instant::MAX;
        // Each pass handles up to BATCH due groups and makes them not due, so
        // the passes end; the bound guards against a logic error looping.
        for _ in 0..=self.jap.groups.len() / BATCH + 1 {
            let due: HVec<Group, BATCH> = self.jap.groups.keys_where(|j| {
                j.dirty || j.retry_at.is_some_and(|t| t <= now) || j.refresh_at <= now
            });
            if due.is_empty() {
                break;
            }
            for g in due {
                self.report_due(now, g);
            }
        }
        for (_, j) in self.jap.groups.iter() {
            next = next.min(j.refresh_at);
            if let Some(r) = j.retry_at {
                next = next.min(r);
            }
            if j.dirty {
                next = now;
            }
        }
        if next == Instant::MAX {
            self.timers.stop(Timer::Reports);
        } else {
            self.timers.set(Timer::Reports, next.max(now + 1));
        }
    }

    fn report_due(&mut self, now: Instant, g: Group) {
        let dirty = self.jap.groups.get(&g).is_some_and(|j| j.dirty);
        if dirty {
            self.report_if_needed(now, g);
        }
        let Some(j) = self.jap.groups.get_mut(&g) else {
            return;
        };
        j.dirty = false;
        let count = j.reported.unwrap_or(0);
        let mut send_to: HVec<ProxyId, MAX_K> = HVec::new();
        if j.refresh_at <= now {
            j.refresh_at = now + self.cfg.report_refresh;
            if count > 0 {
                j.acked.clear();
                j.retries = 0;
                j.retry_at = Some(now + self.cfg.report_retry);
                send_to = j.raps.clone();
                self.counters.jap.report_refreshes += send_to.len() as u64;
            }
        } else if j.retry_at.is_some_and(|t| t <= now) {
            send_to = j
                .raps
                .iter()
                .copied()
                .filter(|r| !j.acked.contains(r))
                .collect();
            j.retries = j.retries.saturating_add(1);
            let backoff = self.cfg.report_retry << j.retries.min(16);
            j.retry_at =
                (!send_to.is_empty()).then_some(now + backoff.min(self.cfg.report_refresh));
            self.counters.jap.report_retries += send_to.len() as u64;
        }
        for to in send_to {
            self.send_report(now, to, g, count);
        }
        self.close_if_done(g);
    }
}
