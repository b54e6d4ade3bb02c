//! A worker that breaks the RPC protocol on purpose, to prove that the supervisor cuts such a
//! worker off and restarts it (debug knob `DK_DEBUG_WORKER_MISBEHAVE=<family>:<mode>`, read by
//! the `datakit worker` entry point like the other `DK_DEBUG_*` knobs).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dk_proto::rpc::{Batch, INGEST_SOCKET, IngestClient, MAX_FRAME_BYTES};
use dk_proto::{Category, Point, Value};
use tokio::io::AsyncWriteExt as _;

/// How a worker misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {
    /// Keeps 64 pushes in flight at once, without end.
    Flood,
    /// Sends a frame header announcing more than the frame cap.
    Oversize,
    /// Sends a well-framed message that does not decode.
    Garbage,
    /// Says hello for another family than the one it was started for, and stays alive.
    WrongFamily,
    /// Reports 2 MiB of metrics text whenever asked (over the 1 MiB the supervisor
    /// keeps); not a protocol violation, the report is refused and counted.
    BigMetrics,
}

impl Misbehave {
    /// The mode for `family` in a `family:mode[,family:mode]` spec.
    pub fn from_spec(spec: &str, family: &str) -> Option<Misbehave> {
        spec.split(',').find_map(|item| {
            let (f, mode) = item.trim().split_once(':')?;
            if f != family {
                return None;
            }
            match mode {
                "flood" => Some(Misbehave::Flood),
                "oversize" => Some(Misbehave::Oversize),
                "garbage" => Some(Misbehave::Garbage),
                "wrong_family" => Some(Misbehave::WrongFamily),
                "big_metrics" => Some(Misbehave::BigMetrics),
                _ => None,
            }
        })
    }

    /// The family the hello claims.
    pub(crate) fn hello_family(self, family: &str) -> String {
        match self {
            Misbehave::WrongFamily => format!("{family}-impostor"),
            _ => family.to_string(),
        }
    }

    /// The metrics text reported instead of `real`.
    pub(crate) fn metrics(self, real: String) -> String {
        match self {
            Misbehave::BigMetrics => "# misbehave\n".repeat((2 << 20) / 12 + 1),
            _ => real,
        }
    }

    /// Misbehaves (after the worker is up) until the supervisor kills the process.
    pub(crate) async fn act(self, run_dir: &Path, client: IngestClient) {
        tracing::warn!(mode = ?self, "DK_DEBUG_WORKER_MISBEHAVE is set for this family; breaking the RPC protocol.");
        match self {
            Misbehave::Flood => flood(client).await,
            Misbehave::Oversize => {
                let mut header = u32::try_from(MAX_FRAME_BYTES * 4)
                    .unwrap_or(u32::MAX)
                    .to_be_bytes()
                    .to_vec();
                header.extend_from_slice(&[0u8; 4096]);
                raw_frame(run_dir, &header).await;
            }
            Misbehave::Garbage => {
                let mut frame = 64u32.to_be_bytes().to_vec();
                frame.extend_from_slice(&[0xAB; 64]);
                raw_frame(run_dir, &frame).await;
            }
            Misbehave::WrongFamily | Misbehave::BigMetrics => {}
        }
        std::future::pending::<()>().await;
    }
}

async fn flood(client: IngestClient) {
    let batch = Arc::new(Batch {
        seq: u64::MAX,
        category: Category::Metric,
        input: "misbehave".into(),
        election: false,
        no_global_tags: false,
        points: vec![Point::new("misbehave_flood", 1).field("n", Value::I(1))],
    });
    loop {
        let calls = (0..64).map(|_| {
            client.push(
                crate::rpc::context_with_timeout(Duration::from_secs(5)),
                batch.clone(),
            )
        });
        let answers = futures::future::join_all(calls).await;
        if answers.iter().all(Result::is_err) {
            return;
        }
    }
}

/// Writes `bytes` on a fresh ingest connection of this process and holds it open.
async fn raw_frame(run_dir: &Path, bytes: &[u8]) {
    match tokio::net::UnixStream::connect(run_dir.join(INGEST_SOCKET)).await {
        Ok(mut s) => {
            let _ = s.write_all(bytes).await;
            // Hold the connection (the supervisor is the one to close it).
            let mut buf = [0u8; 64];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
        }
        Err(e) => tracing::error!(error = %e, "Cannot connect to misbehave."),
    }
}

/// A family whose config validation panics (debug knob `DK_DEBUG_CONFIG_PANIC=<family>`): the
/// supervisor must report it as a config problem and keep running. Everything else is the
/// wrapped family's.
pub struct PanicInValidate(pub &'static dyn crate::Family);

impl crate::Family for PanicInValidate {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn inputs(&self) -> &'static [&'static str] {
        self.0.inputs()
    }
    fn samples(&self) -> &'static [(&'static str, &'static str)] {
        self.0.samples()
    }
    fn validate(&self, input: &str, _toml_text: &str) -> Vec<crate::ConfigProblem> {
        // A deliberate panic: this family exists to prove the supervisor survives one.
        panic!(
            "DK_DEBUG_CONFIG_PANIC: validating {input} of family {}",
            self.0.name()
        )
    }
    fn listeners(&self, input: &str, toml_text: &str) -> Vec<crate::ListenSpec> {
        self.0.listeners(input, toml_text)
    }
    fn build(
        &self,
        config: &dk_proto::rpc::WorkerConfig,
    ) -> Result<Vec<Box<dyn crate::Input>>, Vec<crate::ConfigProblem>> {
        self.0.build(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_names_a_mode_per_family() {
        let spec = "host:flood, socket:wrong_family,statsd:nonsense";
        assert_eq!(Misbehave::from_spec(spec, "host"), Some(Misbehave::Flood));
        assert_eq!(
            Misbehave::from_spec(spec, "socket"),
            Some(Misbehave::WrongFamily)
        );
        assert_eq!(Misbehave::from_spec(spec, "statsd"), None);
        assert_eq!(Misbehave::from_spec(spec, "logging"), None);
        assert_eq!(
            Misbehave::from_spec("x:garbage", "x"),
            Some(Misbehave::Garbage)
        );
        assert_eq!(
            Misbehave::from_spec("x:oversize", "x"),
            Some(Misbehave::Oversize)
        );
        assert_eq!(
            Misbehave::from_spec("x:big_metrics", "x"),
            Some(Misbehave::BigMetrics)
        );
        assert!(Misbehave::BigMetrics.metrics(String::new()).len() > 1 << 20);
        assert_eq!(Misbehave::Flood.metrics("m 1\n".into()), "m 1\n");
    }
}
