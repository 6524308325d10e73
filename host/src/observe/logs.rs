//! Log lines: tracing-subscriber's full format, each line written while a request is
//! served carrying that request's context (method, route, request id, tenant) where a
//! request span would put it. The context is a thread-local, current while the
//! request's future is polled (`api::layers`): a request, its connector call and the
//! provider request run on one serving thread. A guest's stdout and stderr are written
//! out by tasks of their own, which take the context of the call that made them.
//!
//! Why not a span per request: creating one (registry slot, filter, fields formatted
//! into a string) was the largest single cost of the request frame, paid on every
//! request for lines that are rarely written.
//!
//! May import nothing of the crate.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

/// What the log lines of a request say about it.
pub struct RequestContext {
    method: String,
    route: String,
    request_id: String,
    tenant: OnceLock<String>,
}

impl RequestContext {
    /// The context of a request to `route` (the matched pattern, not the path).
    pub fn new(method: &str, route: &str, request_id: &str) -> Self {
        RequestContext {
            method: method.to_owned(),
            route: route.to_owned(),
            request_id: request_id.to_owned(),
            tenant: OnceLock::new(),
        }
    }
}

thread_local! {
    /// The request whose future this thread is polling, if any.
    static CURRENT: RefCell<Option<Arc<RequestContext>>> = const { RefCell::new(None) };
}

/// Records the authenticated tenant in the current request's context.
pub fn record_tenant(tenant: &str) {
    CURRENT.with(|current| {
        if let Some(request) = &*current.borrow() {
            let _ = request.tenant.set(tenant.to_owned());
        }
    });
}

/// The current request's context, to carry to work done elsewhere for it.
pub fn current_request() -> Option<Arc<RequestContext>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// Runs `f` with `context` as the thread's current request.
pub fn in_request<T>(context: &Arc<RequestContext>, f: impl FnOnce() -> T) -> T {
    /// Puts back the previous request however `f` ends.
    struct Restore(Option<Arc<RequestContext>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            let _ = CURRENT.try_with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|current| current.replace(Some(context.clone())));
    let _restore = Restore(previous);
    f()
}

/// The log line format: tracing-subscriber's full format, with the context of the
/// request being served (if any) where a request span used to be:
/// `2026-12-06T11:17:02.123456Z  WARN request{method=POST route=/api/… request_id="…"
/// tenant=acme}: conduit::runtime: plugin call failed …`.
pub struct RequestLines {
    rest: tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, ()>,
}

impl Default for RequestLines {
    fn default() -> Self {
        RequestLines {
            rest: tracing_subscriber::fmt::format::Format::default()
                .without_time()
                .with_level(false),
        }
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for RequestLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::time::FormatTime;
        if tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut writer)
            .is_err()
        {
            writer.write_str("<unknown time>")?;
        }
        write!(writer, " {:>5} ", event.metadata().level().as_str())?;
        let _ = CURRENT.try_with(|current| -> std::fmt::Result {
            let Ok(current) = current.try_borrow() else {
                return Ok(());
            };
            let Some(request) = current.as_ref() else {
                return Ok(());
            };
            // Method and route are the server's own text; the request id may be the
            // client's, so it is quoted.
            write!(
                writer,
                "request{{method={} route={} request_id={:?}",
                request.method, request.route, request.request_id
            )?;
            if let Some(tenant) = request.tenant.get() {
                write!(writer, " tenant={tenant}")?;
            }
            writer.write_str("}: ")
        });
        self.rest.format_event(ctx, writer, event)
    }
}
