//! The threads recorders serve on, kept for the next recorder once a test is done: spawning a
//! thread was a large part of what starting a recorder cost. Each recorder still gets its own
//! runtime on its thread, dropped when it stops, so nothing it spawned outlives it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

/// What a server thread runs for one recorder.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// Threads waiting for their next job.
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

/// Runs `job` on an idle server thread, or on a new one named `name`.
pub(super) fn run(name: &str, mut job: Job) -> std::io::Result<()> {
    loop {
        let idle = IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let Some(worker) = idle else { break };
        match worker.send(job) {
            Ok(()) => return Ok(()),
            // That thread is gone (a job panicked): try the next one.
            Err(mpsc::SendError(returned)) => job = returned,
        }
    }
    let (sender, receiver) = mpsc::channel();
    // Cannot fail: the receiver is alive until the thread below ends.
    let _ = sender.send(job);
    std::thread::Builder::new().name(name.to_owned()).spawn(move || work(sender, receiver)).map(drop)
}

fn work(sender: Sender<Job>, receiver: Receiver<Job>) {
    while let Ok(job) = receiver.recv() {
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            return; // not reused: whatever it held may be in any state
        }
        IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(sender.clone());
    }
}
