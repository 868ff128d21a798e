//! The status page in a real headless browser (Debian's `chromium`, driven over the DevTools protocol by
//! chromiumoxide), against node1 of a 4-node lab with agents:
//! - the page loads with no console error or uncaught exception, shows the cluster healthy and the node table with
//!   4 rows;
//! - after a power cut of node4 it shows "degraded" (it refreshes itself) and node4 down;
//! - screenshots go to `target/artifacts/status-page-healthy.png` and `status-page-degraded.png`.
//!
//! The host has no address on the lab bridge, so the browser reaches node1's agent through a loopback proxy that
//! connects from inside node1's network namespace. Needs root, the lab's packages and `chromium`; skipped (with a
//! message) when not root.

mod status_util;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::log::{EnableParams, EventEntryAdded};
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use cluster_tests::lab::{repo_root, require_root};
use futures_util::StreamExt;
use status_util::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Polls the page's DOM (JavaScript `expr` returning a string) until `want` says yes, for at most `timeout`.
async fn wait_dom(
    page: &Page,
    expr: &str,
    timeout: Duration,
    want: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        if let Ok(v) = page.evaluate(expr).await {
            last = v.into_value::<String>().unwrap_or_default();
            if want(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("after {timeout:?} the page still shows {last:?} for {expr}");
}

fn artifacts() -> PathBuf {
    let dir = repo_root().join("target/artifacts");
    std::fs::create_dir_all(&dir).expect("create target/artifacts");
    dir
}

async fn screenshot(page: &Page, name: &str) {
    let path = artifacts().join(name);
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .expect("screenshot");
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_the_cluster_and_a_lost_node_in_a_real_browser() {
    if !require_root("status_browser") {
        return;
    }
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (ci/install-deps)"
    );
    let lab = tokio::task::spawn_blocking(|| four_node_lab("sb"))
        .await
        .unwrap();
    let lab = Arc::new(lab);
    {
        let lab = lab.clone();
        tokio::task::spawn_blocking(move || {
            wait_formed(&lab, &["node1", "node2", "node3", "node4"], FORM_TIMEOUT)
        })
        .await
        .unwrap();
    }
    let port = proxy_to_node(&lab, "node1", 7780);
    let url = format!("http://127.0.0.1:{port}/");

    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(CHROMIUM)
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1100, 1400)
        .viewport(None)
        .args([
            "disable-gpu",
            "disable-background-networking",
            "disable-component-update",
            "disable-sync",
            "no-first-run",
        ])
        .launch_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });

    let page = browser.new_page("about:blank").await.unwrap();
    page.execute(EnableParams::default()).await.unwrap();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut console = page
        .event_listener::<EventConsoleApiCalled>()
        .await
        .unwrap();
    let mut thrown = page.event_listener::<EventExceptionThrown>().await.unwrap();
    let mut log = page.event_listener::<EventEntryAdded>().await.unwrap();
    {
        let errors = errors.clone();
        tokio::spawn(async move {
            loop {
                let e = tokio::select! {
                    Some(c) = console.next() => {
                        let kind = format!("{:?}", c.r#type).to_lowercase();
                        (kind == "error" || kind == "assert").then(|| format!("console.{kind}: {:?}", c.args))
                    }
                    Some(t) = thrown.next() => Some(format!("exception: {:?}", t.exception_details)),
                    Some(l) = log.next() => {
                        let level = format!("{:?}", l.entry.level).to_lowercase();
                        (level == "error").then(|| format!("log: {} {:?}", l.entry.text, l.entry.url))
                    }
                    else => break,
                };
                if let Some(e) = e {
                    errors.lock().unwrap().push(e);
                }
            }
        });
    }

    page.goto(&url).await.expect("open the status page");
    let rows = wait_dom(
        &page,
        "String(document.querySelectorAll('#nodes tbody tr').length)",
        Duration::from_secs(15),
        |v| v == "4",
    )
    .await;
    assert_eq!(rows, "4");
    let health = wait_dom(
        &page,
        "document.getElementById('health').textContent",
        Duration::from_secs(15),
        |v| v == "healthy",
    )
    .await;
    assert_eq!(health, "healthy");
    let text = wait_dom(
        &page,
        "document.body.innerText",
        Duration::from_secs(5),
        |_| true,
    )
    .await;
    for want in [
        "Shared volume",
        "Bricks online",
        "4 of 4",
        "Swarm",
        "Last events",
        "(this)",
    ] {
        assert!(text.contains(want), "the page shows {want:?}:\n{text}");
    }
    screenshot(&page, "status-page-healthy.png").await;

    // Power cut of node4: the page, still open, turns degraded and shows node4 down.
    {
        let lab = lab.clone();
        tokio::task::spawn_blocking(move || lab.kill("node4"))
            .await
            .unwrap()
            .unwrap();
    }
    let killed = Instant::now();
    wait_dom(
        &page,
        "document.getElementById('health').textContent",
        Duration::from_secs(25),
        |v| v == "degraded",
    )
    .await;
    eprintln!(
        "the page showed degraded {:?} after the kill",
        killed.elapsed()
    );
    let down_rows = wait_dom(
        &page,
        "String(document.querySelectorAll('#nodes tbody tr.down').length)",
        Duration::from_secs(5),
        |v| v == "1",
    )
    .await;
    assert_eq!(down_rows, "1");
    // The brick table follows (glusterd notices the lost brick within its ping timeout).
    wait_dom(
        &page,
        "document.getElementById('volume').innerText",
        Duration::from_secs(30),
        |v| v.contains("3 of 4") && v.contains("offline"),
    )
    .await;
    // Let the events list catch up before the picture.
    wait_dom(
        &page,
        "document.getElementById('events').textContent",
        Duration::from_secs(10),
        |v| v.contains("stopped answering"),
    )
    .await;
    screenshot(&page, "status-page-degraded.png").await;

    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    browser.close().await.ok();
    browser.wait().await.ok();
    driver.abort();
    let lab = Arc::try_unwrap(lab).expect("one owner left");
    tokio::task::spawn_blocking(move || lab.down())
        .await
        .unwrap()
        .unwrap();
}
