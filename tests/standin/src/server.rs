//! One test server's lifecycle, shared by the stand-in vLLM and the stand-in identity
//! provider: accept on a bound listener until stopped, each connection in its own task,
//! and on stop (or drop) refuse new connections and close the open ones.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A running server. Dropping it without [`Server::stop`] also shuts it down, in the background.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept_task: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves each connection `listener` accepts with `serve`, until stopped.
    pub fn spawn<F, Fut>(listener: TcpListener, serve: F) -> std::io::Result<Server>
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let accept_task = tokio::spawn(accept_loop(listener, serve, shutdown_rx));
        Ok(Server { addr, shutdown, accept_task: Some(accept_task) })
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every open connection; returns once the port is released.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Why: a forgotten handle must not leave a live server behind in the test runtime.
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, serve: F, mut shutdown: watch::Receiver<bool>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Why a JoinSet: dropping it aborts every connection task, which closes their sockets.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            // An Err means the handle was dropped; both mean "shut down".
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    conns.spawn(serve(stream));
                }
                // Why: transient errors (e.g. EMFILE) must not spin the loop hot.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
}
