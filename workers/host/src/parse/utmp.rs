//! `utmp` records (logged-in users) and systemd-logind session files, for `n_users`.

/// Size of one glibc `struct utmp` record on Linux (all 64- and 32-bit glibc targets).
pub const UTMP_RECORD_SIZE: usize = 384;

/// `ut_type` of a normal login session.
const USER_PROCESS: i16 = 7;

/// Counts the `USER_PROCESS` records in the bytes of a utmp file, as gopsutil's
/// `host.Users` does. A trailing partial record is ignored.
pub fn count_utmp_users(bytes: &[u8]) -> usize {
    bytes
        .chunks_exact(UTMP_RECORD_SIZE)
        .filter(|rec| i16::from_ne_bytes([rec[0], rec[1]]) == USER_PROCESS)
        .count()
}

/// Whether a systemd-logind session file (`/run/systemd/sessions/<id>`) describes a
/// live user login: `CLASS=user` and a `STATE` other than `closing`. Used for
/// `n_users` on hosts without a utmp file.
pub fn is_live_user_session(text: &str) -> bool {
    let mut class_user = false;
    let mut closing = false;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("CLASS", v)) => class_user = v.trim() == "user",
            Some(("STATE", v)) => closing = v.trim() == "closing",
            _ => {}
        }
    }
    class_user && !closing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ut_type: i16) -> Vec<u8> {
        let mut r = vec![0u8; UTMP_RECORD_SIZE];
        r[..2].copy_from_slice(&ut_type.to_ne_bytes());
        r
    }

    #[test]
    fn counts_only_user_process_records() {
        let mut file = Vec::new();
        file.extend(record(2)); // BOOT_TIME
        file.extend(record(1)); // RUN_LVL
        file.extend(record(7));
        file.extend(record(6)); // LOGIN_PROCESS
        file.extend(record(7));
        file.extend(record(8)); // DEAD_PROCESS
        file.extend([7, 0, 0]); // truncated trailing record
        assert_eq!(count_utmp_users(&file), 2);
        assert_eq!(count_utmp_users(&[]), 0);
    }

    #[test]
    fn logind_sessions_count_when_user_class_and_not_closing() {
        assert!(is_live_user_session(
            "# comment\nUID=1000\nUSER=a\nSTATE=active\nCLASS=user\nTYPE=tty\n"
        ));
        assert!(!is_live_user_session("CLASS=user\nSTATE=closing\n"));
        assert!(!is_live_user_session("CLASS=greeter\nSTATE=online\n"));
    }
}
