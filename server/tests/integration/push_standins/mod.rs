//! Local stand-ins of the push services, for the delivery tests: real HTTP servers on
//! `127.0.0.1:0` that check what a real service checks (credentials, signatures, message shape,
//! the encrypted payload), answer what a test scripts, and record what they received.
//!
//! * [`fcm::FcmStandin`]: Google's OAuth 2.0 token endpoint (JWT-bearer grant, RS256 assertion
//!   of a test-only service account) and FCM's `messages:send`.
//! * [`webpush::WebPushStandin`]: a Web Push service that checks VAPID (RFC 8292) and decrypts
//!   `aes128gcm` (RFC 8291) with the subscription's private key, with its own decryption code
//!   written from the RFCs rather than the library under test.
//!
//! Not every test uses every helper.
#![allow(dead_code)]

pub mod fcm;
pub mod test_only_key;
pub mod webpush;

use std::net::SocketAddr;

/// A server running on a random loopback port until dropped.
struct Running {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(router: axum::Router) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a stand-in");
        let addr = listener.local_addr().expect("stand-in address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("stand-in serves");
        });
        Running { addr, task }
    }

    /// `http://127.0.0.1:<port>`: the server's origin.
    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}
