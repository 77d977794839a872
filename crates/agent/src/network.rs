//! The pod network of the runc runtime: one Linux bridge per node holding
//! the first address of the node's pod CIDR (the pods' gateway), and per
//! pod a veth pair, one end on the bridge, the other `eth0` in the pod's
//! network namespace (held by its pause process) with the pod's address
//! and a default route through the gateway. Pods of the nodes that share a
//! machine reach each other through the host's routes to each bridge.
//!
//! **Confinement**: pod addresses exist only on the bridge and in pod
//! namespaces. [`Network::setup`] refuses a pod CIDR that overlaps a route
//! it did not make (so nothing of ours shadows the machine's networks),
//! and an nftables table of the node's (`inet keelson-<bridge>`) drops
//! forwarded traffic from the pod CIDR to any address outside the cluster
//! CIDR, so no pod packet is routed off the machine.
//!
//! Links and addresses are made with iproute2 (`ip -batch`, one process
//! per pod inside the pod's namespace through `nsenter`), rules with
//! `nft -f`: the tools the machine's own networking uses.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub use keelson_model::cidr::Cidr;

/// A short stable hex name part for `s` (interface names hold 15 bytes).
pub fn short_hash(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..5])
}

/// The node's pod network.
#[derive(Clone, Debug)]
pub struct Network {
    pub bridge: String,
    pub pod_cidr: Cidr,
    pub cluster_cidr: Cidr,
    /// Services' cluster IPs: routed to the bridge, so a packet to one
    /// that no rule rewrites stays on the machine.
    pub service_cidr: Option<Cidr>,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn run_stdin(cmd: &mut Command, input: &str) -> Result<(), String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {cmd:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("write to {cmd:?}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait for {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {} (input: {input})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl Network {
    /// The network of node `node` with pod CIDR `pod_cidr`.
    pub fn new(node: &str, pod_cidr: Cidr, cluster_cidr: Cidr) -> Network {
        Network {
            bridge: Network::bridge_name(node),
            pod_cidr,
            cluster_cidr,
            service_cidr: None,
        }
    }

    fn table(&self) -> String {
        format!("keelson-{}", self.bridge)
    }

    /// Make the bridge, its address and the confinement rules (again after
    /// an agent restart: what exists is kept). Refuses a pod CIDR that
    /// overlaps a route not on our bridge.
    pub fn setup(&self) -> Result<(), String> {
        let gw = self
            .pod_cidr
            .gateway()
            .ok_or_else(|| format!("pod CIDR {} has no room for a gateway", self.pod_cidr))?;
        let routes = run(Command::new("ip").args(["-4", "-o", "route", "show", "table", "all"]))?;
        for line in routes.lines() {
            let mut words = line.split_whitespace();
            let mut first = words.next().unwrap_or("");
            if matches!(first, "local" | "broadcast" | "unicast" | "multicast") {
                first = words.next().unwrap_or("");
            }
            let dev = line
                .split_whitespace()
                .skip_while(|w| *w != "dev")
                .nth(1)
                .unwrap_or("");
            // Ours: this node's bridge, or another node's on this machine.
            if dev == self.bridge || dev.starts_with("kb") {
                continue;
            }
            let dst = match first {
                "default" => continue,
                d if d.contains('/') => Cidr::parse(d).ok(),
                d => d.parse::<Ipv4Addr>().ok().map(|net| Cidr { net, len: 32 }),
            };
            if let Some(dst) = dst {
                if dst.overlaps(&self.pod_cidr) && dst.len > 0 {
                    return Err(format!(
                        "pod CIDR {} overlaps the route {line:?}, which this agent did not make",
                        self.pod_cidr
                    ));
                }
            }
        }
        let exists = Command::new("ip")
            .args(["link", "show", &self.bridge])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !exists {
            run(Command::new("ip").args(["link", "add", &self.bridge, "type", "bridge"]))?;
        }
        let addr = format!("{gw}/{}", self.pod_cidr.len);
        let addrs =
            run(Command::new("ip").args(["-4", "-o", "addr", "show", "dev", &self.bridge]))?;
        if !addrs.contains(&format!(" {addr} ")) {
            run(Command::new("ip").args(["addr", "add", &addr, "dev", &self.bridge]))?;
        }
        run(Command::new("ip").args(["link", "set", &self.bridge, "up"]))?;
        // Forwarding between the bridges of the nodes on this machine.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| format!("enable ip_forward: {e}"))?;
        // NodePorts on a loopback node address (as kube-proxy sets it).
        let _ = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1");
        // Bridged packets through the IP hooks, so a Service's DNAT is
        // undone on the reply between two pods of one bridge.
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1");
        if let Some(svc) = self.service_cidr {
            run(Command::new("ip").args([
                "route",
                "replace",
                &svc.to_string(),
                "dev",
                &self.bridge,
            ]))?;
        }
        let t = self.table();
        let rules = format!(
            "table inet {t} {{}}\ndelete table inet {t}\n\
             table inet {t} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    \
             ip saddr {pod} ip daddr != {cluster} drop\n  }}\n}}\n",
            pod = self.pod_cidr,
            cluster = self.cluster_cidr,
        );
        run_stdin(Command::new("nft").args(["-f", "-"]), &rules)
    }

    /// The bridge's name of node `node`.
    pub fn bridge_name(node: &str) -> String {
        format!("kb{}", short_hash(node))
    }

    /// Remove node `node`'s bridge and rules (it leaves for good).
    pub fn teardown_node(node: &str) {
        let bridge = Network::bridge_name(node);
        let t = format!("keelson-{bridge}");
        let _ = run_stdin(
            Command::new("nft").args(["-f", "-"]),
            &format!("table inet {t} {{}}\ndelete table inet {t}\n"),
        );
        let _ = run(Command::new("ip").args(["link", "del", &bridge]));
    }

    /// The host end's name of pod `uid`'s veth.
    pub fn host_veth(uid: &str) -> String {
        format!("kv{}", short_hash(uid))
    }

    /// Wire the namespace of process `pid` (the pod's pause): a veth onto
    /// the bridge, `eth0` with `ip`, `lo` up, the default route.
    pub fn attach(&self, uid: &str, pid: u32, ip: Ipv4Addr) -> Result<(), String> {
        let host = Network::host_veth(uid);
        let peer = format!("kp{}", short_hash(uid));
        let gw = self
            .pod_cidr
            .gateway()
            .ok_or("a pod CIDR without a gateway")?;
        let _ = run(Command::new("ip").args(["link", "del", &host]));
        run_stdin(
            Command::new("ip").args(["-batch", "-"]),
            &format!(
                "link add {host} type veth peer name {peer}\n\
                 link set {peer} netns {pid}\n\
                 link set {host} master {br}\n\
                 link set {host} type bridge_slave hairpin on\n\
                 link set {host} up\n",
                br = self.bridge
            ),
        )?;
        run_stdin(
            Command::new("nsenter").args(["-t", &pid.to_string(), "-n", "ip", "-batch", "-"]),
            &format!(
                "link set lo up\n\
                 link set {peer} name eth0\n\
                 addr add {ip}/{len} dev eth0\n\
                 link set eth0 up\n\
                 route add default via {gw}\n",
                len = self.pod_cidr.len
            ),
        )
    }

    /// Remove pod `uid`'s veth (gone already when its namespace went).
    pub fn detach(uid: &str) {
        let host = Network::host_veth(uid);
        let _ = Command::new("ip")
            .args(["link", "del", &host])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interfaces() {
        let c = Cidr::parse("10.244.3.0/24").unwrap();
        let cluster = Cidr::parse("10.244.0.0/16").unwrap();
        assert_eq!(Network::host_veth("u").len(), 12);
        assert!(
            Network::new("a-very-long-node-name", c, cluster)
                .bridge
                .len()
                <= 15
        );
    }
}
