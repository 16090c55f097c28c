//! The last failure's message of a handle (a context, a gradient), kept per calling thread so
//! that a shared handle never hands one thread another's message. A thread's message is dropped
//! once the thread has ended, so a handle shared by many short-lived threads (a thread pool
//! that recycles its workers, a server spawning one per request) does not grow with them.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::ThreadId;

thread_local! {
    /// Alive as long as its thread: a message whose token can no longer be upgraded belongs to
    /// a thread that has ended (thread ids are never reused).
    static ALIVE: Arc<()> = Arc::new(());
}

#[derive(Default)]
struct Messages {
    by_thread: HashMap<ThreadId, (Weak<()>, CString)>,
    /// Size after the last sweep of ended threads; the next sweep comes at twice it, so
    /// sweeping costs O(1) per message recorded.
    swept: usize,
}

/// The per-thread last-error messages of one handle.
#[derive(Default)]
pub(crate) struct LastErrors(Mutex<Messages>);

impl LastErrors {
    /// Keeps `message` as the calling thread's last error (NUL bytes become spaces).
    pub(crate) fn record(&self, message: &str) {
        let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // While a thread is being torn down its token is gone; its message then lives until the
        // next sweep, and it reads none after that.
        let alive = ALIVE.try_with(Arc::downgrade).unwrap_or_default();
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.by_thread.insert(std::thread::current().id(), (alive, message));
        if m.by_thread.len() > 2 * m.swept.max(16) {
            m.by_thread.retain(|_, (alive, _)| alive.strong_count() > 0);
            m.swept = m.by_thread.len();
        }
    }

    /// The calling thread's last message, or `empty`. The pointer stays valid until this thread
    /// records another message on this handle, or the handle is freed (a sweep removes ended
    /// threads' messages only, and a `CString`'s buffer does not move when the map grows).
    pub(crate) fn get(&self, empty: *const c_char) -> *const c_char {
        let m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        m.by_thread.get(&std::thread::current().id()).map_or(empty, |(_, msg)| msg.as_ptr())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap().by_thread.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn each_thread_reads_its_own_message() {
        let errors = Arc::new(LastErrors::default());
        errors.record("main");
        let other = Arc::clone(&errors);
        std::thread::spawn(move || {
            other.record("worker");
            // SAFETY: a live message of this thread.
            assert_eq!(unsafe { CStr::from_ptr(other.get(c"".as_ptr())) }, c"worker");
        })
        .join()
        .unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { CStr::from_ptr(errors.get(c"".as_ptr())) }, c"main");
        errors.record("with\0nul");
        // SAFETY: as above.
        assert_eq!(unsafe { CStr::from_ptr(errors.get(c"".as_ptr())) }, c"with nul");
    }

    #[test]
    fn messages_of_ended_threads_are_dropped() {
        let errors = Arc::new(LastErrors::default());
        for _ in 0..2000 {
            let e = Arc::clone(&errors);
            std::thread::spawn(move || e.record("failed")).join().unwrap();
        }
        errors.record("still here");
        // Without the sweep the map would hold 2001 messages; with it, at most 2 x 16 + 1.
        assert!(errors.len() <= 33, "{} messages kept", errors.len());
        // SAFETY: a live message of this thread.
        assert_eq!(unsafe { CStr::from_ptr(errors.get(c"".as_ptr())) }, c"still here");
    }
}
