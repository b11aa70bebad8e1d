//! Async modules: tasks on a tokio runtime, under the same lifecycle rules
//! as blocking modules, and async operations that never block the executor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beehive_context::{ContextError, Hive, RestartPolicy, RestartType, SimpleAsyncModule, DEFAULT_RESTART_INTERVAL};
use beehive_model::Message;

/// Runs `body` on a current-thread runtime of its own thread and fails the
/// test if it has not finished within `limit`: an async operation that
/// blocks the only executor thread deadlocks the body, and this turns the
/// deadlock into a failure instead of a hung test.
fn within<F>(limit: Duration, body: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(body());
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("not finished within {limit:?}: the executor was blocked")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked"),
    }
}

fn echo(name: &'static str) -> SimpleAsyncModule {
    SimpleAsyncModule::new(name, "echoes", move |hive: Hive| async move {
        while let Ok(req) = hive.receive_async(name).await {
            let body = format!("{}:{}", name, req.content().as_str().unwrap_or_default());
            hive.send_resp_async(req.new_response(body)).await?;
        }
        Ok(())
    })
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_module_answers_on_the_same_thread() {
    let hive = Hive::new();
    hive.register_async(echo("echo")).unwrap();
    hive.start().unwrap();
    for i in 0..100 {
        let resp = hive
            .send_sync_async("echo", Message::new("").fill_body(format!("{i}")), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(resp.content().as_str(), Some(format!("echo:{i}").as_str()));
    }
    assert_eq!(hive.modules(), ["echo"]);
}

/// One task waits in `send_sync_async` for a module that answers only after
/// another task has made 100 steps: if any of the async operations blocked
/// the (only) executor thread, the steps could not happen and the request
/// would time out.
#[test]
fn waiting_for_a_response_leaves_the_executor_free() {
    within(Duration::from_secs(20), || async {
        let steps = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        let hive = Hive::new();
        let module_steps = Arc::clone(&steps);
        hive.register_async(SimpleAsyncModule::new("slow", "g", move |hive: Hive| {
            let steps = Arc::clone(&module_steps);
            let mut go = go_rx.clone();
            async move {
                while let Ok(req) = hive.receive_async("slow").await {
                    go.wait_for(|ready| *ready).await?;
                    let n = steps.load(Ordering::SeqCst);
                    hive.send_resp_async(req.new_response(format!("{n}"))).await?;
                }
                Ok(())
            }
        }))
        .unwrap();
        hive.start().unwrap();
        let counter = {
            let steps = Arc::clone(&steps);
            tokio::spawn(async move {
                for _ in 0..100 {
                    steps.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
                go_tx.send(true).unwrap();
            })
        };
        let resp = hive
            .send_sync_async("slow", Message::new("").fill_body("x"), Duration::from_secs(10))
            .await
            .expect("answered");
        assert_eq!(resp.content().as_str(), Some("100"));
        counter.await.unwrap();
    });
}

#[test]
fn async_group_sends_wait_for_room_without_blocking() {
    within(Duration::from_secs(20), || async {
        // Inboxes of one message: the second broadcast must wait until the
        // members have taken the first, which they can only do if the waiting
        // broadcast does not hold the thread.
        let hive = Hive::builder().channel_capacity(1).build();
        let got = Arc::new(AtomicUsize::new(0));
        for name in ["m1", "m2"] {
            let got = Arc::clone(&got);
            hive.register_async(SimpleAsyncModule::new(name, "fan", move |hive: Hive| {
                let got = Arc::clone(&got);
                async move {
                    while hive.receive_async(name).await.is_ok() {
                        got.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            }))
            .unwrap();
        }
        hive.start().unwrap();
        for i in 0..50 {
            hive.send_to_group_async("fan", Message::new("").fill_body(format!("{i}"))).await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while got.load(Ordering::SeqCst) < 100 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every member got every broadcast");
        assert_eq!(got.load(Ordering::SeqCst), 100);
    });
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_group_send_names_the_members_it_missed() {
    let hive = Hive::new();
    for m in ["a", "b"] {
        hive.add_module(m, beehive_model::constants::MSG_CTX_TYPE_CHANNEL).unwrap();
        hive.add_module_group(m, "g").unwrap();
    }
    // A sealed inbox stays in the group but takes no more messages.
    hive.backend(beehive_model::constants::MSG_CTX_TYPE_CHANNEL).unwrap().seal("b").unwrap();
    let err = hive.send_to_group_async("g", Message::new("").fill_body("x")).await.unwrap_err();
    match err {
        ContextError::GroupDelivery { group, failed, .. } => {
            assert_eq!(group, "g");
            assert_eq!(failed.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(), ["b"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hive.receive_async("a").await.unwrap().content().as_str(), Some("x"));
}

#[test]
fn an_async_module_needs_a_runtime() {
    let hive = Hive::new();
    hive.register_async(echo("echo")).unwrap();
    match hive.start() {
        Err(ContextError::NoRuntime { module }) => assert_eq!(module, "echo"),
        other => panic!("{other:?}"),
    }
    // Nothing was started: the module has no inbox.
    assert!(matches!(hive.try_send("echo", Message::new("")), Err(ContextError::UnknownModule { .. })));
}

#[test]
fn the_builder_runtime_runs_async_modules_started_from_a_plain_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let hive = Hive::builder().runtime(rt.handle().clone()).build();
    hive.register_async(echo("echo")).unwrap();
    hive.start().unwrap();
    let resp = hive.send_sync("echo", Message::new("").fill_body("hi"), Duration::from_secs(5)).unwrap();
    assert_eq!(resp.content().as_str(), Some("echo:hi"));
    let report = hive.shutdown(Duration::from_secs(5));
    assert_eq!(report.stopped, ["echo"]);
    assert!(report.not_stopped.is_empty());
}

#[test]
fn failing_and_panicking_async_modules_are_restarted_by_policy() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let hive = Hive::builder().runtime(rt.handle().clone()).build();
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    let runs = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_millis(30);
    let module_runs = Arc::clone(&runs);
    hive.register_async(
        SimpleAsyncModule::new("flaky", "g", move |_hive: Hive| {
            let tx = tx.clone();
            let n = module_runs.fetch_add(1, Ordering::SeqCst);
            async move {
                tx.send(Instant::now()).unwrap();
                match n {
                    0 => Err("first run fails".into()),
                    1 => panic!("second run panics"),
                    _ => Ok(()),
                }
            }
        })
        .restart_policy(RestartPolicy::new(RestartType::OnFailure).interval(interval).retries(5)),
    )
    .unwrap();
    hive.start().unwrap();
    let starts: Vec<Instant> = (0..3).map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("a start")).collect();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        // The policy's interval, not the 1 s default (with room for a busy
        // machine).
        assert!(gap >= interval && gap < DEFAULT_RESTART_INTERVAL, "{gap:?}");
    }
    // The third run succeeded: OnFailure stops there.
    let report = hive.shutdown(Duration::from_secs(5));
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert!(rx.try_recv().is_err(), "no fourth start");
    assert_eq!(report.stopped, ["flaky"]);
}

/// Shutting down from the runtime the async modules run on: the async
/// shutdown lets them see `Closed` and return, so all are reported stopped
/// with nothing left undelivered.
#[test]
fn async_shutdown_stops_async_modules_on_the_same_runtime() {
    within(Duration::from_secs(20), || async {
        let hive = Hive::new();
        hive.register_async(echo("e1")).unwrap();
        hive.register_async(echo("e2")).unwrap();
        hive.start().unwrap();
        let resp = hive.send_sync_async("e2", Message::new("").fill_body("x"), Duration::from_secs(5)).await.unwrap();
        assert_eq!(resp.content().as_str(), Some("e2:x"));
        // The modules stop as soon as their inboxes are sealed: shutdown
        // returns then, not at its deadline.
        let t0 = Instant::now();
        let report = hive.shutdown_async(Duration::from_secs(10)).await;
        assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
        let mut stopped = report.stopped.clone();
        stopped.sort();
        assert_eq!(stopped, ["e1", "e2"]);
        assert!(report.not_stopped.is_empty());
        assert!(report.undelivered.is_empty());
    });
}
