//! The queue on a small tmpfs: the free-disk ratio bound and ENOSPC (mounting needs root:
//! without it the tests skip, or fail under `DK_REQUIRE_PEERS=1`; a failed mount as root fails
//! the test).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{cfg, drain, rec};
use dk_queue::{Queue, QueueError};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        if !dk_proto::testing::require_root("mount a tmpfs to fill") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs (these tests need root)");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn free_disk_ratio_evicts_the_oldest_data_and_keeps_the_filesystem_below_it() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let dir = fs.path().join("metric");
    let mut c = cfg(&dir, 256 << 10);
    c.max_disk_ratio = 0.5;
    let (q, _) = Queue::open(c, &["a"]).unwrap();
    let n = 60u64; // 60 x 64 KiB = 3.75 MiB, far above half of 4 MiB
    for i in 1..=n {
        assert_eq!(q.append(rec(i, 64 << 10)).await.unwrap(), i);
        assert!(
            q.stats().disk_bytes <= 2 << 20,
            "queue at {} bytes",
            q.stats().disk_bytes
        );
    }
    let s = q.stats();
    let evicted = s.dropped.evicted_disk_ratio.records;
    assert!(evicted > 0);
    assert_eq!(s.dropped.evicted_cap.records, 0);
    assert_eq!(
        s.consumer("a").unwrap().dropped.evicted_disk_ratio.records,
        evicted
    );
    let got = drain(&q, "a").await;
    assert_eq!(got.len() as u64 + evicted, n);
    assert_eq!(got.first().unwrap().0, evicted + 1, "the oldest went first");
    for (s, r) in &got {
        assert_eq!(*r, rec(*s, 64 << 10));
    }
}

#[tokio::test]
async fn free_disk_ratio_with_no_drop_refuses_with_full() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let dir = fs.path().join("logging");
    let mut c = cfg(&dir, 256 << 10);
    c.max_disk_ratio = 0.5;
    c.no_drop = true;
    let (q, _) = Queue::open(c, &["a"]).unwrap();
    let mut acked = 0;
    let err = loop {
        match q.append(rec(acked + 1, 64 << 10)).await {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 64, "never refused");
    };
    let QueueError::Full(msg) = &err else {
        panic!("want Full, got {err:?}")
    };
    assert!(msg.contains("max_disk_ratio"), "{msg}");
    assert!(
        (28..=32).contains(&acked),
        "{acked} records of 64 KiB under 2 MiB"
    );
    assert_eq!(q.stats().dropped.total().records, 0);
    // Once the consumer is done with some segments, appends succeed again.
    q.commit("a", 8).await.unwrap();
    assert_eq!(q.append(rec(acked + 1, 64 << 10)).await.unwrap(), acked + 1);
}

#[tokio::test]
async fn enospc_fails_the_append_without_a_crash_and_the_queue_recovers_once_space_is_back() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let dir = fs.path().join("metric");
    let mut c = cfg(&dir, 1 << 20);
    c.max_disk_ratio = 1.0; // let the filesystem really fill up
    let (q, _) = Queue::open(c.clone(), &["a"]).unwrap();
    // Leave about 200 KiB free.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![7u8; (4 << 20) - (200 << 10)]).unwrap();

    let mut acked = 0u64;
    let err = loop {
        match q.append(rec(acked + 1, 64 << 10)).await {
            Ok(seq) => {
                acked += 1;
                assert_eq!(seq, acked);
            }
            Err(e) => break e,
        }
        assert!(acked < 10, "the filesystem never filled up");
    };
    assert!(err.is_out_of_space(), "{err}");
    assert!(matches!(
        &err,
        QueueError::Io {
            action: "write",
            ..
        }
    ));
    // It keeps failing cleanly while the disk is full.
    assert!(
        q.append(rec(100, 64 << 10))
            .await
            .unwrap_err()
            .is_out_of_space()
    );
    assert_eq!(q.stats().last_seq, acked);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(q.append(rec(acked + 1, 64 << 10)).await.unwrap(), acked + 1);
    let got = drain(&q, "a").await;
    assert_eq!(got.len() as u64, acked + 1);
    for (s, r) in &got {
        assert_eq!(*r, rec(*s, 64 << 10));
    }
    q.close();
    drop(q);
    // Nothing of the failed writes is left on disk.
    let (_q, recovery) = Queue::open(c, &["a"]).unwrap();
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.corrupt_segments, 0);
}
