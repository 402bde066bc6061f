//! Test support: a fault-injecting UDP relay on loopback.
//!
//! [`FaultRelay`] is a real UDP relay, not a mock: it binds `127.0.0.1:0`, and
//! forwards every datagram from its client to the server address it was given, and
//! every datagram from the server back to the client. On the way it can drop
//! datagrams at random (loss), hold them back (delay), send them twice
//! (duplication) or drop everything (partition). The randomness comes from a
//! seeded generator, so a failing run can be replayed with the same seed (packet
//! timing still varies between runs).
//!
//! One client at a time: the client is whoever sent the last datagram that did not
//! come from the server, so a client that reconnects from a new port is followed.
//! Point the client at [`FaultRelay::local_addr`] instead of the server.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Counters of what the relay did, in datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Datagrams received from either side.
    pub received: u64,
    /// Datagrams sent on (duplicates included).
    pub forwarded: u64,
    /// Datagrams dropped by loss or partition.
    pub dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
}

#[derive(Debug)]
struct Faults {
    loss: f64,
    delay: Duration,
    duplication: f64,
    partitioned: bool,
    /// Loss and duplication draws (fastrand, seeded: a test replays them).
    rng: fastrand::Rng,
    client: Option<SocketAddr>,
    stats: RelayStats,
}

/// Datagrams waiting out their delay, in send order (the delay is the same for
/// all datagrams queued while it is unchanged, so the queue stays in time order).
#[derive(Debug, Default)]
struct DelayQueue {
    entries: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
}

#[derive(Debug)]
struct RelayShared {
    faults: Mutex<Faults>,
    queue: Mutex<DelayQueue>,
    queued: Notify,
}

/// A UDP relay between one client and one server on loopback, with loss, delay,
/// duplication and partition. Dropping it stops it.
#[derive(Debug)]
pub struct FaultRelay {
    local_addr: SocketAddr,
    shared: Arc<RelayShared>,
    tasks: [JoinHandle<()>; 2],
}

impl FaultRelay {
    /// Starts a relay on `127.0.0.1:0` forwarding to `server`; `seed` seeds the
    /// loss and duplication draws. Starts with no faults.
    pub async fn start(server: SocketAddr, seed: u64) -> io::Result<FaultRelay> {
        let socket = Arc::new(UdpSocket::bind(("127.0.0.1", 0)).await?);
        let local_addr = socket.local_addr()?;
        let shared = Arc::new(RelayShared {
            faults: Mutex::new(Faults {
                loss: 0.0,
                delay: Duration::ZERO,
                duplication: 0.0,
                partitioned: false,
                rng: fastrand::Rng::with_seed(seed),
                client: None,
                stats: RelayStats::default(),
            }),
            queue: Mutex::new(DelayQueue::default()),
            queued: Notify::new(),
        });
        let forward = tokio::spawn(forward_loop(socket.clone(), server, shared.clone()));
        let delayed = tokio::spawn(delayed_send_loop(socket, shared.clone()));
        Ok(FaultRelay {
            local_addr,
            shared,
            tasks: [forward, delayed],
        })
    }

    /// The address clients should send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn with_faults<R>(&self, f: impl FnOnce(&mut Faults) -> R) -> R {
        let mut faults = self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut faults)
    }

    /// Drops each datagram (either direction) with probability `loss`.
    pub fn set_loss(&self, loss: f64) {
        self.with_faults(|faults| faults.loss = loss.clamp(0.0, 1.0));
    }

    /// Holds each datagram (either direction) back by `delay`, so a round trip
    /// gains twice `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.with_faults(|faults| faults.delay = delay);
    }

    /// Sends each forwarded datagram twice with probability `duplication`.
    pub fn set_duplication(&self, duplication: f64) {
        self.with_faults(|faults| faults.duplication = duplication.clamp(0.0, 1.0));
    }

    /// While partitioned, every datagram is dropped.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.with_faults(|faults| faults.partitioned = partitioned);
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        self.with_faults(|faults| faults.stats)
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `true` with probability `p` (never when `p` is 0 or less).
fn chance(rng: &mut fastrand::Rng, p: f64) -> bool {
    p > 0.0 && rng.f64() < p
}

async fn forward_loop(socket: Arc<UdpSocket>, server: SocketAddr, shared: Arc<RelayShared>) {
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (len, from) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            // ICMP "port unreachable" from a closed peer surfaces as an error on
            // some systems; the relay keeps going.
            Err(_) => continue,
        };
        let datagram = buffer.get(..len).unwrap_or_default();
        // Decide everything under the lock, send after it.
        let (destination, copies, delay) = {
            let mut faults = shared.faults.lock().unwrap_or_else(PoisonError::into_inner);
            faults.stats.received += 1;
            let destination = if from == server {
                faults.client
            } else {
                faults.client = Some(from);
                Some(server)
            };
            let Some(destination) = destination else {
                continue;
            };
            let loss = faults.loss;
            if faults.partitioned || chance(&mut faults.rng, loss) {
                faults.stats.dropped += 1;
                continue;
            }
            let duplication = faults.duplication;
            let copies = if chance(&mut faults.rng, duplication) {
                faults.stats.duplicated += 1;
                2
            } else {
                1
            };
            faults.stats.forwarded += copies;
            (destination, copies, faults.delay)
        };
        if delay.is_zero() {
            for _ in 0..copies {
                let _ = socket.send_to(datagram, destination).await;
            }
        } else {
            let due = Instant::now() + delay;
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            for _ in 0..copies {
                queue
                    .entries
                    .push_back((due, destination, datagram.to_vec()));
            }
            drop(queue);
            shared.queued.notify_one();
        }
    }
}

async fn delayed_send_loop(socket: Arc<UdpSocket>, shared: Arc<RelayShared>) {
    enum Next {
        Send(SocketAddr, Vec<u8>),
        SleepUntil(Instant),
        Wait,
    }
    loop {
        let next = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            match queue.entries.front() {
                Some((due, _, _)) if *due <= Instant::now() => match queue.entries.pop_front() {
                    Some((_, destination, datagram)) => Next::Send(destination, datagram),
                    None => Next::Wait,
                },
                // A newly queued datagram is due later than the head (same delay,
                // later arrival), so sleeping until the head is due is enough.
                Some((due, _, _)) => Next::SleepUntil(*due),
                None => Next::Wait,
            }
        };
        match next {
            Next::Send(destination, datagram) => {
                let _ = socket.send_to(&datagram, destination).await;
            }
            Next::SleepUntil(due) => tokio::time::sleep_until(due).await,
            Next::Wait => shared.queued.notified().await,
        }
    }
}
