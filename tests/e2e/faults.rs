//! Faulty providers: one that hangs, one that trickles its answer a byte per 100 ms,
//! one that resets the connection, one that answers garbage, one that answers 50 MiB.
//! The real Stripe connector against each gets a typed error within its deadline, and
//! the host serves another connection normally meanwhile.

use crate::support::fake_stripe::{FakeStripe, GOOD_KEY};
use crate::support::{Conduit, PluginDecl};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE_MS: u64 = 2000;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Hang,
    Trickle,
    Reset,
    Garbage,
    Huge,
}

/// A provider on loopback that misbehaves as `fault` on every connection.
async fn faulty(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(misbehave(stream, fault));
        }
    });
    addr
}

async fn misbehave(mut stream: TcpStream, fault: Fault) {
    let mut request = [0u8; 4096];
    let _ = stream.read(&mut request).await;
    match fault {
        Fault::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
        Fault::Trickle => {
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            for _ in 0..1000 {
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Fault::Reset => {
            // Linger zero: closing sends RST instead of FIN (and, being zero, never
            // blocks the thread on drop, which is why tokio deprecates the setter).
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Fault::Garbage => {
            let _ = stream
                .write_all(b"\x00\xffthis is not HTTP at all\r\n\r\n")
                .await;
        }
        Fault::Huge => {
            let size = 50 * 1024 * 1024;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..size / chunk.len() {
                if stream.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::test]
async fn faulty_providers_get_typed_errors_within_the_deadline_and_others_are_served() {
    let (good, good_addr) = FakeStripe::start().await;
    let faults = [
        Fault::Hang,
        Fault::Trickle,
        Fault::Reset,
        Fault::Garbage,
        Fault::Huge,
    ];
    let mut addrs = Vec::new();
    for fault in faults {
        addrs.push((fault, faulty(fault).await));
    }
    let mut allowed: Vec<String> = addrs.iter().map(|(_, a)| a.to_string()).collect();
    allowed.push(good_addr.to_string());
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let conduit = Conduit::start(vec![PluginDecl::new("stripe", "conduit_stripe")
        .allow(&allowed)
        .setting(&format!("deadline_ms = {DEADLINE_MS}"))])
    .await;
    let token = conduit.tenant("acme").await;
    let connect = |addr| crate::stripe::byok_connection(&conduit, &token, addr);
    let healthy = connect(good_addr).await;
    let mut faulty_connections = Vec::new();
    for (fault, addr) in &addrs {
        faulty_connections.push((*fault, connect(*addr).await));
    }
    let create = "payments.createPaymentIntent";
    let input = json!({"amount": 2000, "currency": "usd"});

    let calls = faulty_connections.iter().map(|(fault, id)| {
        let (conduit, token, input) = (&conduit, &token, input.clone());
        async move {
            let started = Instant::now();
            let r = conduit.execute(token, id, create, input).await;
            (*fault, r, started.elapsed())
        }
    });
    // Meanwhile, the healthy connection answers, again and again.
    let served = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answers = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let r = conduit
                .execute(&token, &healthy, create, input.clone())
                .await;
            answers.push((r.status, started.elapsed()));
        }
        answers
    };
    let (faulted, served) = tokio::join!(futures_util::future::join_all(calls), served);

    for (status, took) in served {
        assert_eq!(status, 200);
        assert!(took < Duration::from_millis(DEADLINE_MS), "{took:?}");
    }
    assert!(good.received().len() >= 5);
    let limit = Duration::from_millis(DEADLINE_MS + 1500);
    for (fault, r, took) in faulted {
        assert!(took < limit, "{fault:?} took {took:?}");
        let code = r.code().to_owned();
        // Hanging and trickling run into the deadline; a reset or garbage is a
        // provider that cannot be reached; 50 MiB is refused at the response cap
        // (10 MiB) and the connector reports the failure.
        let expected = match fault {
            Fault::Hang | Fault::Trickle => (504, "plugin_timeout"),
            Fault::Reset | Fault::Garbage => (503, "provider_unavailable"),
            Fault::Huge => (502, "plugin_error"),
        };
        assert_eq!((r.status, code.as_str()), expected, "{fault:?}: {}", r.text);
        assert!(!r.text.contains(GOOD_KEY), "{fault:?}: {}", r.text);
    }
    // And after all of it, still normal.
    let after = conduit.execute(&token, &healthy, create, input).await;
    assert_eq!(after.status, 200, "{}", after.text);
}
