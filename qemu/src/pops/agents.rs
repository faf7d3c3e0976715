//! The lab's target agents: one per (target, group), started, stopped
//! (SIGTERM, a graceful leave), restarted and watched through their logs.

use super::{TopoLab, DNS_GROUP, DNS_LOAD_GROUP, HTTP_GROUP};
use crate::lab::register_pid;
use crate::services::{self, ServiceProc};
use crate::topo::Service;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// A target agent of the lab: which target it speaks for, in which group.
pub struct Agent {
    pub pop: usize,
    /// The target's index in its POP.
    pub target: usize,
    pub group: pias::Group,
    /// The service's transport address (the target's address, the group's port).
    pub service: std::net::SocketAddrV4,
    /// Starts so far (a restart is a new process with a new log).
    pub starts: u32,
    pub proc: ServiceProc,
}

impl TopoLab {
    /// The groups a service joins: DNS both 203.0.113.10:53/udp (proximity)
    /// and 203.0.113.12:53/udp (load), HTTP 203.0.113.10:80/tcp (groups of
    /// different ports share one anycast address).
    pub fn groups_of(s: Service) -> &'static [pias::Group] {
        match s {
            Service::Dns => &[DNS_GROUP, DNS_LOAD_GROUP],
            Service::Http => &[HTTP_GROUP],
        }
    }

    /// Starts an agent beside every service of every target, one per group it
    /// joins, each joining through its POP's appliance.
    pub fn start_agents(&mut self, agent: &Path) -> Result<()> {
        self.agent_bin = Some(agent.to_path_buf());
        let pops = self.topology.pops.clone();
        for (p, pop) in pops.iter().enumerate() {
            for t in &pop.targets {
                for s in &t.services {
                    for group in Self::groups_of(*s) {
                        self.start_agent(p, t.index, *group)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts an agent for target `target` of POP `pop` in `group` (the
    /// service on the target's address at the group's port, health-checked by
    /// a TCP connect); its index in `agents`. Needs `start_agents` first (it
    /// names the binary).
    pub fn start_agent(&mut self, pop: usize, target: usize, group: pias::Group) -> Result<usize> {
        let p = self.topology.pops.get(pop).context("no such POP")?;
        let service = std::net::SocketAddrV4::new(p.target_ip(target), group.port);
        let i = self.agents.len();
        let proc = self.spawn_agent(pop, target, group, service, 1)?;
        self.agents.push(Agent {
            pop,
            target,
            group,
            service,
            starts: 1,
            proc,
        });
        Ok(i)
    }

    fn spawn_agent(
        &self,
        pop: usize,
        target: usize,
        group: pias::Group,
        service: std::net::SocketAddrV4,
        start: u32,
    ) -> Result<ServiceProc> {
        let bin = self
            .agent_bin
            .as_ref()
            .context("the lab was started without an agent binary")?;
        let name = &self.topology.pops[pop].name;
        let tag = format!(
            "{name}-t{target}-{}.{}-{}",
            group.ip.0[3], group.port, start
        );
        let proc = services::start_agent(
            &self.target_ns(pop, target),
            bin,
            group,
            service,
            &self.keys.group_key(&group),
            self.dir.path(),
            &tag,
        )?;
        register_pid(&self.prefix, proc.pid());
        Ok(proc)
    }

    /// The index of the agent of `pop`'s target `target` in `group`.
    pub fn agent_of(&self, pop: usize, target: usize, group: pias::Group) -> Option<usize> {
        self.agents
            .iter()
            .position(|a| a.pop == pop && a.target == target && a.group == group)
    }

    /// Stops agent `i` as an operator would (SIGTERM: it leaves its group)
    /// and waits, bounded, for it to exit; its log must say it left.
    pub fn stop_agent(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let a = self.agents.get_mut(i).context("no such agent")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(a.proc.pid())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .context("sending SIGTERM to the agent")?;
        let deadline = Instant::now() + timeout;
        while a.proc.is_running()? {
            if Instant::now() >= deadline {
                bail!(
                    "agent {} still running {timeout:?} after SIGTERM",
                    a.proc.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = std::fs::read_to_string(&a.proc.log).unwrap_or_default();
        if !log.contains("left the group") {
            bail!("agent stopped without leaving; its log:\n{log}");
        }
        Ok(())
    }

    /// Starts agent `i` again (a new process with a new log), as after `stop_agent`.
    pub fn restart_agent(&mut self, i: usize) -> Result<()> {
        let (pop, target, group, service, starts) = {
            let a = self.agents.get(i).context("no such agent")?;
            (a.pop, a.target, a.group, a.service, a.starts)
        };
        let proc = self.spawn_agent(pop, target, group, service, starts + 1)?;
        let a = &mut self.agents[i];
        a.proc = proc;
        a.starts += 1;
        Ok(())
    }

    /// Waits, bounded, until agent `i`'s log holds `needle`.
    pub fn wait_agent_log(&self, i: usize, needle: &str, timeout: Duration) -> Result<()> {
        let a = self.agents.get(i).context("no such agent")?;
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&a.proc.log).unwrap_or_default();
            if log.contains(needle) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{:?} not in {} after {timeout:?}:\n{log}",
                    needle,
                    a.proc.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills (SIGKILL) the server `prog` ("dnsmasq", "nginx") of `pop`'s
    /// target `target`, as a crash would.
    pub fn kill_service(&mut self, pop: usize, target: usize, prog: &str) -> Result<()> {
        let ns = self.target_ns(pop, target);
        let s = self
            .services
            .iter_mut()
            .find(|s| s.ns == ns && s.name == prog)
            .with_context(|| format!("no {prog} in {ns}"))?;
        s.kill();
        Ok(())
    }

    /// Waits until every agent's log says it joined (bounded).
    pub fn wait_agents_joined(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for a in self.agents.iter_mut() {
                a.proc.check_running()?;
                let log = std::fs::read_to_string(&a.proc.log).unwrap_or_default();
                if !log.contains("joined") {
                    waiting.push(a.proc.log.display().to_string());
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "agents not joined after {timeout:?}: {}",
                    waiting.join(", ")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
