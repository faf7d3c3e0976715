//! What this proxy knows of one group, by role, for the management port's
//! `Op::Group` (`piasctl groups`): read-only, built when asked.

use super::jap::Health;
use super::Proxy;
use crate::addr::Group;
use crate::status::{GroupReport, IapView, JapView, RapView, TargetHealth, TargetView};
use crate::time::{Instant, MS};

impl Proxy {
    /// The report on `g` at `now`; lists beyond what one datagram carries
    /// are cut, with their totals given.
    pub fn group_report(&self, now: Instant, g: &Group) -> GroupReport {
        GroupReport {
            group: *g,
            served: self.cfg.group_policy(g).is_some(),
            raps: self.raps_of(g).iter().copied().collect(),
            iap: self.iap_view(now, g),
            jap: self.jap_view(g),
            rap: self.rap_view(now, g),
        }
    }

    fn iap_view(&self, now: Instant, g: &Group) -> Option<IapView> {
        let pending = self.iap.pending.get(g).is_some();
        let entry = self.iap.cache.get(g);
        if entry.is_none() && !pending {
            return None;
        }
        Some(IapView {
            cached: entry.is_some(),
            japs: entry
                .map(|e| e.japs.iter().map(|r| (r.jap, r.count)).collect())
                .unwrap_or_default(),
            expires_in_ms: entry.map_or(0, |e| e.expires.saturating_sub(now) / MS),
            lookup_pending: pending,
        })
    }

    fn jap_view(&self, g: &Group) -> Option<JapView> {
        let j = self.jap.groups.get(g)?;
        let all = || self.jap.targets.iter(&j.targets);
        Some(JapView {
            targets: all()
                .map(|t| TargetView {
                    endpoint: t.ep,
                    weight: t.weight,
                    health: match t.health {
                        Health::Up => TargetHealth::Up,
                        Health::Suspect => TargetHealth::Suspect,
                        Health::Down => TargetHealth::Down,
                    },
                    draining: t.draining_since.is_some(),
                    flows: t.flows,
                })
                .take(crate::status::REPORT_TARGETS)
                .collect(),
            targets_total: u32::try_from(j.targets.len()).unwrap_or(u32::MAX),
            members: u32::try_from(all().filter(|t| t.counts()).count()).unwrap_or(u32::MAX),
            reported: j.reported,
            reported_to: j.raps.clone(),
            acked_by: j.acked.clone(),
        })
    }

    fn rap_view(&self, now: Instant, g: &Group) -> Option<RapView> {
        let list = self.rap.groups.get(g)?;
        let all = || self.rap.japs.iter(list);
        Some(RapView {
            entries: all()
                .map(|e| (e.jap, e.count, now.saturating_sub(e.refreshed) / MS))
                .take(crate::status::REPORT_RAP_ENTRIES)
                .collect(),
            entries_total: u32::try_from(all().count()).unwrap_or(u32::MAX),
        })
    }
}
