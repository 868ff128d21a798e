//! API request verification: arbitrary header values, method, path, body and clock go through
//! `Verifier::proof_from_headers` and `verify_request_at`. Properly signed requests (when `sign` is set) must
//! pass exactly once inside the clock window; nothing else may pass, and nothing may panic.
#![no_main]

use firstboot_agent::trust::{ClusterKey, TrustError, Verifier, MAX_SKEW_SECS};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    method: String,
    path: String,
    body: Vec<u8>,
    ts: Option<String>,
    nonce: Option<String>,
    mac: Option<String>,
    now: i64,
    sign: Option<(i64, bool)>,
}

fuzz_target!(|i: Input| {
    let key = ClusterKey::new(&[3u8; 32]);
    let v = Verifier::new(key.clone());
    if let Some((ts, tamper)) = i.sign {
        let p = key.sign_request_at(&i.method, &i.path, &i.body, ts);
        let mut body = i.body.clone();
        if tamper {
            body.push(1);
        }
        let r = v.verify_request_at(&i.method, &i.path, &body, &p, i.now);
        let in_window = i
            .now
            .checked_sub(ts)
            .and_then(i64::checked_abs)
            .is_some_and(|d| d <= MAX_SKEW_SECS);
        match (&r, tamper, in_window) {
            (Ok(()), false, true) => {
                assert_eq!(
                    v.verify_request_at(&i.method, &i.path, &body, &p, i.now),
                    Err(TrustError::Replay)
                );
            }
            (Err(_), true, _) | (Err(_), _, false) => {}
            _ => panic!(
                "signed={} tamper={tamper} in_window={in_window}: {r:?}",
                !tamper
            ),
        }
        return;
    }
    let Ok(proof) =
        Verifier::proof_from_headers(i.ts.as_deref(), i.nonce.as_deref(), i.mac.as_deref())
    else {
        return;
    };
    let r = v.verify_request_at(&i.method, &i.path, &i.body, &proof, i.now);
    assert!(r.is_err(), "an unsigned request passed: {proof:?}");
});
