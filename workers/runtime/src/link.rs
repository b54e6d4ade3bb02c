//! The worker's link to its supervisor: the ingest client every push goes through, which can
//! be held while the supervisor swaps its binary and then replaced by a client of the new one.
//!
//! # Design
//!
//! A push takes the client with [`Link::begin`], which counts the call as in flight (the
//! returned [`InRpc`] guard ends it). [`Link::hold`] stops new calls from starting and waits
//! until none is in flight: after it, nothing the old supervisor may have acknowledged is
//! pending, so a batch can never be both stored by the old supervisor and sent again to the
//! new one. Pushes that want to start meanwhile wait in [`Link::begin`] with their batches
//! until [`Link::resume`] installs the new client.

use std::sync::Mutex;
use std::time::Duration;

use dk_proto::rpc::IngestClient;
use tokio::sync::Notify;

struct State {
    client: IngestClient,
    held: bool,
    in_rpc: usize,
}

/// The shared ingest client (see the module docs).
pub struct Link {
    state: Mutex<State>,
    changed: Notify,
}

/// One RPC call in flight; ends it when dropped.
pub struct InRpc<'a> {
    link: &'a Link,
}

impl Drop for InRpc<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.link.state.lock() {
            s.in_rpc = s.in_rpc.saturating_sub(1);
        }
        self.link.changed.notify_waiters();
    }
}

impl Link {
    /// A link over `client`.
    pub fn new(client: IngestClient) -> Link {
        Link {
            state: Mutex::new(State {
                client,
                held: false,
                in_rpc: 0,
            }),
            changed: Notify::new(),
        }
    }

    /// Waits until calls may start, then returns the client with the call counted in flight.
    pub async fn begin(&self) -> (IngestClient, InRpc<'_>) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(mut s) = self.state.lock()
                && !s.held
            {
                s.in_rpc += 1;
                return (s.client.clone(), InRpc { link: self });
            }
            notified.await;
        }
    }

    /// The client, for calls that are not pushes (error reports), unless the link is held.
    pub fn client(&self) -> Option<IngestClient> {
        let s = self.state.lock().ok()?;
        (!s.held).then(|| s.client.clone())
    }

    /// Whether calls are held (a handover is under way).
    pub fn is_held(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.held)
    }

    /// Holds new calls and waits until none is in flight. On timeout the hold is lifted again.
    ///
    /// # Errors
    /// How many calls were still in flight at the deadline.
    pub async fn hold(&self, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let in_rpc = match self.state.lock() {
                Ok(mut s) => {
                    s.held = true;
                    s.in_rpc
                }
                Err(_) => return Err("the link state is poisoned".into()),
            };
            if in_rpc == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.release();
                return Err(format!(
                    "{in_rpc} pushes were still waiting for the supervisor after {within:?}"
                ));
            }
        }
    }

    /// Lifts a hold without changing the client.
    pub fn release(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.held = false;
        }
        self.changed.notify_waiters();
    }

    /// Installs the client of the new supervisor and lets held calls go.
    pub fn resume(&self, client: IngestClient) {
        if let Ok(mut s) = self.state.lock() {
            s.client = client;
            s.held = false;
        }
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn client() -> IngestClient {
        let (client_side, _server_side) = tarpc::transport::channel::unbounded();
        IngestClient::new(tarpc::client::Config::default(), client_side).spawn()
    }

    #[tokio::test]
    async fn hold_waits_for_calls_in_flight_and_holds_new_ones_until_resume() {
        let link = Arc::new(Link::new(client()));
        let (_c, in_rpc) = link.begin().await;
        // A call is in flight: the hold waits for it.
        let holder = {
            let link = link.clone();
            tokio::spawn(async move { link.hold(Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        assert!(!holder.is_finished(), "hold returned with a call in flight");
        drop(in_rpc);
        holder.await.unwrap().unwrap();
        assert!(link.is_held());
        assert!(link.client().is_none(), "error reports wait too");
        // New calls wait until the new client is installed.
        let caller = {
            let link = link.clone();
            tokio::spawn(async move {
                let (_c, _g) = link.begin().await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!caller.is_finished(), "a call started while held");
        link.resume(client());
        tokio::time::timeout(Duration::from_secs(5), caller)
            .await
            .unwrap()
            .unwrap();
        assert!(!link.is_held());
    }

    #[tokio::test]
    async fn a_hold_that_times_out_is_lifted_and_says_how_many_calls_were_left() {
        let link = Link::new(client());
        let (_c, _in_rpc) = link.begin().await;
        let err = link.hold(Duration::from_millis(20)).await.unwrap_err();
        assert!(err.contains("1 pushes"), "{err}");
        assert!(!link.is_held());
        assert!(link.client().is_some());
    }
}
