//! The labs' BGP: the `[bgp]` each appliance gets, BIRD or FRR started on
//! every POP's router, and the routers' view of the anycast prefix.

use super::{Routers, TopoLab, TopoOptions};
use crate::topo::ANYCAST;
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The `[bgp]` of POP `p`'s appliance: its router as the one neighbour.
pub(super) fn bgp_config(
    p: usize,
    pop: &crate::topo::Pop,
    hold_s: u16,
    bfd: bool,
) -> pias::config::Bgp {
    use crate::routers::{APPLIANCE_AS, ROUTER_AS_BASE};
    let mut b = pias::config::Bgp {
        local_as: APPLIANCE_AS,
        connect_retry_s: 1,
        drain_delay_ms: 3_000,
        ..pias::config::Bgp::default()
    };
    let _ = b.neighbours.push(pias::config::Neighbour {
        address: pias::Ipv4(pop.router_ip().octets()),
        remote_as: ROUTER_AS_BASE + p as u32 + 1,
        hold_time_s: hold_s,
        passive: false,
        bfd,
    });
    b
}

impl TopoLab {
    /// Starts BIRD or FRR on every POP's router (after the appliances: BIRD
    /// gives up on a session whose link is down when it starts) and waits
    /// until each router routes the anycast prefix to its own appliance.
    pub(super) fn start_routers(&mut self, opts: &TopoOptions) -> Result<()> {
        use crate::routers::{Bird, BirdConfig, BirdPeer, Frr, APPLIANCE_AS, ROUTER_AS_BASE};
        let pops = self.topology.pops.clone();
        let links = self.topology.links.clone();
        for (p, pop) in pops.iter().enumerate() {
            let mut peers = vec![BirdPeer {
                name: "appliance".into(),
                local: pop.router_ip(),
                address: pop.appliance_ip(),
                asn: APPLIANCE_AS,
                appliance: true,
                hold_s: opts.bgp_hold_s,
                bfd: opts.bfd,
            }];
            for link in links.iter().filter(|l| l.a == p || l.b == p) {
                let q = link.other(p);
                peers.push(BirdPeer {
                    name: format!("r{}", q + 1),
                    local: link.ip(link.a == p),
                    address: link.ip(link.a != p),
                    asn: ROUTER_AS_BASE + q as u32 + 1,
                    appliance: false,
                    hold_s: 9,
                    bfd: false,
                });
            }
            let cfg = BirdConfig {
                router_id: pop.router_ip(),
                asn: ROUTER_AS_BASE + p as u32 + 1,
                anycast: format!("{}/{}", ANYCAST.0, ANYCAST.1),
                peers,
            };
            if opts.routers == Routers::Frr {
                let frr = Frr::start(&self.router_ns(p), &cfg, &self.prefix)?;
                self.frrs.push(frr);
            } else {
                let name = format!("bird-r{}", p + 1);
                let bird = Bird::start(
                    &self.router_ns(p),
                    self.dir.path(),
                    &name,
                    &cfg,
                    &self.prefix,
                )?;
                self.birds.push(bird);
            }
        }
        for (p, pop) in pops.iter().enumerate() {
            self.wait_route_via(p, pop.appliance_ip(), Duration::from_secs(30))
                .with_context(|| {
                    format!(
                        "{}'s router never routed the prefix to its appliance",
                        pop.name
                    )
                })?;
        }
        Ok(())
    }

    /// The kernel route of POP `p`'s router to the anycast prefix.
    pub fn anycast_route(&self, p: usize) -> Result<String> {
        let out = self.output(
            &self.router_ns(p),
            &[
                "ip",
                "route",
                "show",
                &format!("{}/{}", ANYCAST.0, ANYCAST.1),
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits until POP `p`'s router routes the anycast prefix via `hop`.
    pub fn wait_route_via(&self, p: usize, hop: Ipv4Addr, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let want = format!("via {hop} ");
        loop {
            let r = self.anycast_route(p)?;
            if format!("{r} ").contains(&want) {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                let bird = self
                    .birds
                    .get(p)
                    .map(|b| b.birdc(&["show", "protocols", "all"]).unwrap_or_default() + &b.log());
                bail!(
                    "after {timeout:?} the route is {r:?}, not via {hop}\n{}",
                    bird.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
