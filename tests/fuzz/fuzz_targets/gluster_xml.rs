//! `gluster --xml` output as the agent reads it: every parser on arbitrary text returns a value or an error,
//! never panics.
#![no_main]

use firstboot_agent::gluster::xml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = xml::parse_op_result(text);
    let _ = xml::parse_pool_list(text);
    let _ = xml::parse_volume_info(text);
    let _ = xml::parse_volume_status(text);
    let _ = xml::parse_heal_info(text);
    let _ = xml::parse_split_brain_count(text);
    let _ = xml::split_brick(text);
});
