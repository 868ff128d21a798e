//! mDNS announcements: arbitrary TXT records (DNS wire form: length-prefixed `key=value` strings, as mdns-sd
//! hands them over) are parsed and verified. With the first byte odd, the record is signed with the cluster key
//! first, so the checks behind the signature are reached too. A record that passes must round-trip.
#![no_main]

use firstboot_agent::peers::Announcement;
use firstboot_agent::trust::ClusterKey;
use libfuzzer_sys::fuzz_target;

fn txt_pairs(mut d: &[u8]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    while let Some((&n, rest)) = d.split_first() {
        let n = (n as usize).min(rest.len());
        let s = String::from_utf8_lossy(&rest[..n]);
        let (k, v) = s.split_once('=').unwrap_or((&s, ""));
        pairs.push((k.to_string(), v.to_string()));
        d = &rest[n..];
    }
    pairs
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let key = ClusterKey::new(&[7u8; 32]);
    let mut pairs = txt_pairs(rest);
    if flags & 1 == 1 {
        pairs.retain(|(k, _)| k != "sig");
        let sig = key.sign_txt(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        pairs.push(("sig".into(), sig));
    }
    if let Ok(a) = Announcement::from_txt(&pairs, &key, "c-1") {
        assert_eq!(a.cluster_id, "c-1");
        let back =
            Announcement::from_txt(&a.to_txt(&key), &key, "c-1").expect("own record verifies");
        assert_eq!(back, a);
        // Another key never accepts it.
        assert!(Announcement::from_txt(&pairs, &ClusterKey::new(&[8u8; 32]), "c-1").is_err());
    }
});
