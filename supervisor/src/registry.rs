//! Which worker pids the supervisor expects, and the hand-over of their RPC connections.
//!
//! The procman registers a child's pid right after spawning it. The RPC servers identify each
//! incoming connection by the peer's pid (`SO_PEERCRED`) and complete that registration: the
//! hello delivers the worker's config, the control connection becomes a `ControlClient`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dk_proto::rpc::{ControlClient, WorkerConfig};
use tokio::sync::{Notify, oneshot};

struct Slot {
    family: String,
    /// A worker of the previous binary, taken over across an exec: its build differs.
    adopted: bool,
    config: WorkerConfig,
    hello_tx: Option<oneshot::Sender<()>>,
    control_tx: Option<oneshot::Sender<ControlClient>>,
    violation_tx: Option<oneshot::Sender<String>>,
}

/// Pending and running workers by pid.
#[derive(Default)]
pub struct WorkerRegistry {
    slots: Mutex<HashMap<u32, Slot>>,
    changed: Notify,
}

/// What procman awaits after registering a pid.
pub struct Registration {
    /// Resolves when the worker's hello has been accepted.
    pub hello: oneshot::Receiver<()>,
    /// Resolves with the client of the worker's control connection.
    pub control: oneshot::Receiver<ControlClient>,
    /// Resolves with a description when the worker broke the protocol (oversize or garbage
    /// frames, a flood of requests, a hello for another family): procman kills and restarts it.
    pub violation: oneshot::Receiver<String>,
}

/// A hello from a pid we do not expect, or for the wrong family.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    /// Not a worker this supervisor spawned.
    #[error("pid {0} is not a worker this supervisor started")]
    UnknownPid(u32),
    /// Family mismatch.
    #[error("pid {pid} was started for family {expected}, but says it runs {got}")]
    WrongFamily {
        /// Peer pid.
        pid: u32,
        /// Family it was spawned for.
        expected: String,
        /// Family it claims.
        got: String,
    },
}

impl WorkerRegistry {
    /// Expects a worker with this pid.
    pub fn register(&self, pid: u32, family: &str, config: WorkerConfig) -> Registration {
        let (hello_tx, hello) = oneshot::channel();
        let (control_tx, control) = oneshot::channel();
        let (violation_tx, violation) = oneshot::channel();
        let slot = Slot {
            family: family.to_string(),
            adopted: false,
            config,
            hello_tx: Some(hello_tx),
            control_tx: Some(control_tx),
            violation_tx: Some(violation_tx),
        };
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(pid, slot);
        }
        self.changed.notify_waiters();
        Registration {
            hello,
            control,
            violation,
        }
    }

    /// Expects a worker of the previous binary (inherited across an exec) to reconnect: its
    /// hello is accepted although its build differs.
    pub fn adopt(&self, pid: u32, family: &str, config: WorkerConfig) -> Registration {
        let registration = self.register(pid, family, config);
        if let Ok(mut slots) = self.slots.lock()
            && let Some(slot) = slots.get_mut(&pid)
        {
            slot.adopted = true;
        }
        registration
    }

    /// Whether `pid` is a worker of the previous binary.
    pub fn is_adopted(&self, pid: u32) -> bool {
        self.slots
            .lock()
            .is_ok_and(|s| s.get(&pid).is_some_and(|slot| slot.adopted))
    }

    /// Reports that the worker `pid` broke the protocol; its procman kills and restarts it.
    /// Returns the family the pid was started for, or `None` for a pid we do not know (or one
    /// already reported).
    pub fn violation(&self, pid: u32, reason: String) -> Option<String> {
        let mut slots = self.slots.lock().ok()?;
        let slot = slots.get_mut(&pid)?;
        let tx = slot.violation_tx.take()?;
        let _ = tx.send(reason);
        Some(slot.family.clone())
    }

    /// Forgets a pid (its process ended).
    pub fn unregister(&self, pid: u32) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&pid);
        }
    }

    /// The family a pid was spawned for, waiting briefly for a registration racing with the
    /// connection.
    pub async fn family_of(&self, pid: u32) -> Option<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let notified = self.changed.notified();
            if let Some(f) = self.slots.lock().ok()?.get(&pid).map(|s| s.family.clone()) {
                return Some(f);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Completes a hello: checks the family and returns the worker's config.
    ///
    /// # Errors
    /// [`IdentifyError`] for an unexpected pid or family.
    pub async fn hello(&self, pid: u32, family: &str) -> Result<WorkerConfig, IdentifyError> {
        let expected = self
            .family_of(pid)
            .await
            .ok_or(IdentifyError::UnknownPid(pid))?;
        if expected != family {
            return Err(IdentifyError::WrongFamily {
                pid,
                expected,
                got: family.to_string(),
            });
        }
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| IdentifyError::UnknownPid(pid))?;
        let slot = slots.get_mut(&pid).ok_or(IdentifyError::UnknownPid(pid))?;
        if let Some(tx) = slot.hello_tx.take() {
            let _ = tx.send(());
        }
        Ok(slot.config.clone())
    }

    /// Hands a worker's control client to the procman waiting for it.
    ///
    /// # Errors
    /// [`IdentifyError::UnknownPid`] for a pid we did not spawn.
    pub async fn control(&self, pid: u32, client: ControlClient) -> Result<(), IdentifyError> {
        self.family_of(pid)
            .await
            .ok_or(IdentifyError::UnknownPid(pid))?;
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| IdentifyError::UnknownPid(pid))?;
        let slot = slots.get_mut(&pid).ok_or(IdentifyError::UnknownPid(pid))?;
        if let Some(tx) = slot.control_tx.take() {
            let _ = tx.send(client);
        }
        Ok(())
    }
}
