//! cmdline.txt (and os-release) of untrusted images: the generation is recognised, the cluster cmdline keeps
//! every other token in order, drops both root-growth tokens, is one line and ends with the first-run tokens.
#![no_main]

use image_builder::image::{self, BOOKWORM_GROWTH, TRIXIE_GROWTH};
use image_builder::payload::{cluster_cmdline, FIRSTRUN_TOKENS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = image::generation_from_cmdline(&text);
    let _ = image::generation_from_os_release(&text);
    for uuid in [None, Some("0b5c2b5e-1f0c-4b8e-9a57-0d7a6f5e4c3b")] {
        let out = cluster_cmdline(&text, uuid);
        assert!(out.ends_with('\n'));
        let body = &out[..out.len() - 1];
        assert!(!body.contains('\n'), "one line: {out:?}");
        let tokens: Vec<&str> = body.split_whitespace().collect();
        assert!(!tokens.contains(&BOOKWORM_GROWTH) && !tokens.contains(&TRIXIE_GROWTH));
        assert!(body.ends_with(FIRSTRUN_TOKENS));
        let kept: Vec<&str> = text
            .split_whitespace()
            .filter(|t| *t != BOOKWORM_GROWTH && *t != TRIXIE_GROWTH)
            .filter(|t| uuid.is_none() || !t.starts_with("root="))
            .collect();
        let produced: Vec<&str> = tokens
            .iter()
            .copied()
            .filter(|t| uuid.is_none() || !t.starts_with("root="))
            .collect();
        let n_first = FIRSTRUN_TOKENS.split_whitespace().count();
        assert_eq!(&produced[..produced.len() - n_first], &kept[..], "{out:?}");
        // Building twice does not stack first-run tokens of a foreign kind nor lose any.
        let again = cluster_cmdline(body, uuid);
        assert!(again.ends_with(&format!("{FIRSTRUN_TOKENS}\n")));
    }
});
