//! What the kernel knows about a running process, read through `procfs`:
//! its resident memory, the port it listens on and the connections it holds.
//! Linux only, like the rest of the harness.

use std::collections::HashSet;

use procfs::net::{TcpNetEntry, TcpState};
use procfs::process::{FDTarget, Process};

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size so far.
    pub hwm_kib: u64,
    /// `RssAnon`: the part of `VmRSS` that is the process's own memory
    /// (heap, stacks); the rest is files mapped in, mostly the binary's code.
    pub anon_kib: u64,
}

/// `VmRSS`, `VmHWM` and `RssAnon` of `pid` (`/proc/<pid>/status`); `None`
/// when the process is gone.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = process(pid)?.status().ok()?;
    Some(Memory {
        rss_kib: status.vmrss?,
        hwm_kib: status.vmhwm?,
        anon_kib: status.rssanon?,
    })
}

fn process(pid: u32) -> Option<Process> {
    Process::new(i32::try_from(pid).ok()?).ok()
}

/// The TCP sockets (IPv4 and IPv6) that `pid` holds open: its socket file
/// descriptors matched by inode against the socket table of its network
/// namespace.
fn tcp_sockets(pid: u32) -> Vec<TcpNetEntry> {
    let Some(process) = process(pid) else {
        return Vec::new();
    };
    let Ok(fds) = process.fd() else {
        return Vec::new();
    };
    let inodes: HashSet<u64> = fds
        .filter_map(Result::ok)
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let v4 = process.tcp().unwrap_or_default();
    let v6 = process.tcp6().unwrap_or_default();
    v4.into_iter()
        .chain(v6)
        .filter(|entry| inodes.contains(&entry.inode))
        .collect()
}

/// The port `pid` listens on (the lowest, should it listen on several).
pub fn listening_port(pid: u32) -> Option<u16> {
    tcp_sockets(pid)
        .iter()
        .filter(|entry| entry.state == TcpState::Listen)
        .map(|entry| entry.local_address.port())
        .min()
}

/// How many established connections `pid` has accepted on `port`: each is
/// one client connection, and an HTTP/1.1 connection carries one request at
/// a time.
pub fn connections_on(pid: u32, port: u16) -> usize {
    tcp_sockets(pid)
        .iter()
        .filter(|entry| entry.state == TcpState::Established && entry.local_address.port() == port)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn this_process_is_seen_listening_and_connected() {
        let me = std::process::id();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(
            tcp_sockets(me)
                .iter()
                .any(|e| e.state == TcpState::Listen && e.local_address.port() == port)
        );
        let before = connections_on(me, port);
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _accepted = listener.accept().unwrap();
        assert_eq!(connections_on(me, port), before + 1);
    }

    #[test]
    fn memory_of_this_process_is_read_and_a_missing_one_is_none() {
        let memory = memory_of(std::process::id()).unwrap();
        assert!(memory.rss_kib > 0 && memory.hwm_kib >= memory.rss_kib);
        assert!(memory.anon_kib > 0 && memory.anon_kib <= memory.rss_kib);
        assert_eq!(memory_of(u32::MAX), None);
    }
}
